"""Arbitrage opportunities to clients: GET /api/v1/arbitrage/opportunities/ (filters, order,
pagination, errors, who may read) and the `arbitrage` WebSocket channel fed by a detection."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from accounts.tests.clients import logged_in
from cryptostock.asgi import application
from market.arbitrage import Opportunity
from market.arbitrage_services import track_opportunities
from market.models import ArbitrageOpportunity, Exchange, Instrument

URL = "/api/v1/arbitrage/opportunities/"
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def instruments(db) -> dict[tuple[str, str], Instrument]:
    made = {}
    for code in ("binance", "kraken", "coinbase"):
        exchange = Exchange.objects.create(code=code, name=code.title())
        for symbol in ("BTC/USDT", "ETH/USDT"):
            made[(code, symbol)] = Instrument.objects.create(exchange=exchange, symbol=symbol)
    return made


def opportunity(instruments, symbol: str, buy: str, sell: str, net_bps: float, at: datetime) -> Opportunity:
    base, _, quote = symbol.partition("/")
    return Opportunity(
        base=base,
        quote=quote,
        buy_venue=buy,
        buy_instrument_id=instruments[(buy, symbol)].pk,
        buy_price=100.0,
        sell_venue=sell,
        sell_instrument_id=instruments[(sell, symbol)].pk,
        sell_price=100.0 + net_bps / 100,
        gross_bps=net_bps + 20,
        net_bps=net_bps,
        observed_at=at.timestamp(),
    )


@pytest.fixture
def history(instruments) -> dict[str, ArbitrageOpportunity]:
    """BTC binance->kraken from 09:00 to 09:02 (closed); ETH coinbase->kraken from 09:05, still open."""
    track_opportunities([opportunity(instruments, "BTC/USDT", "binance", "kraken", 12, T0)], T0)
    track_opportunities([], T0 + timedelta(minutes=2))
    later = T0 + timedelta(minutes=5)
    track_opportunities([opportunity(instruments, "ETH/USDT", "coinbase", "kraken", 30, later)], later)
    return {row.symbol: row for row in ArbitrageOpportunity.objects.all()}


def ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


def test_it_lists_opportunities_newest_first_with_both_legs(viewer_client, history):
    body = viewer_client.get(URL).json()

    assert body["count"] == 2
    eth, btc = body["results"]
    assert (eth["symbol"], eth["open"], eth["closed_at"]) == ("ETH/USDT", True, None)
    assert (btc["symbol"], btc["open"], btc["closed_at"]) == ("BTC/USDT", False, "2026-11-02T09:02:00Z")
    assert eth["buy"]["exchange"] == "coinbase"
    kraken = history["ETH/USDT"].sell_instrument_id
    assert eth["sell"] == {"instrument": kraken, "symbol": "ETH/USDT", "exchange": "kraken"}
    assert (eth["last_net_bps"], eth["max_net_bps"], eth["max_gross_bps"], eth["updates"]) == (30.0, 30.0, 50.0, 0)


def test_it_filters_by_open_symbol_exchange_and_since(viewer_client, history):
    btc, eth = history["BTC/USDT"].pk, history["ETH/USDT"].pk

    assert ids(viewer_client.get(URL, {"open": "true"})) == [eth]
    assert ids(viewer_client.get(URL, {"open": "false"})) == [btc]
    assert ids(viewer_client.get(URL, {"symbol": "btc/usdt"})) == [btc]
    assert ids(viewer_client.get(URL, {"exchange": "kraken"})) == [eth, btc]
    assert ids(viewer_client.get(URL, {"exchange": "binance"})) == [btc]
    assert ids(viewer_client.get(URL, {"exchange": "bitstamp"})) == []
    assert ids(viewer_client.get(URL, {"since": "2026-11-02T09:03:00Z"})) == [eth]
    assert ids(viewer_client.get(URL, {"since": "2026-11-02T09:00:00Z", "symbol": "BTC/USDT"})) == [btc]


def test_it_paginates_as_every_list_does(viewer_client, history):
    body = viewer_client.get(URL, {"limit": 1, "offset": 1}).json()

    assert (body["count"], [row["symbol"] for row in body["results"]]) == (2, ["BTC/USDT"])
    assert viewer_client.get(URL, {"limit": 0}).status_code == 400


@pytest.mark.parametrize(
    ("query", "field"),
    [({"open": "maybe"}, "open"), ({"symbol": "BTCUSDT"}, "symbol"), ({"since": "yesterday"}, "since")],
)
def test_it_refuses_bad_filters_naming_them(viewer_client, history, query, field):
    response = viewer_client.get(URL, query)

    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {field}


def test_it_shows_one_opportunity_and_404s_an_unknown_one(viewer_client, history):
    row = history["BTC/USDT"]

    shown = viewer_client.get(f"{URL}{row.pk}/").json()

    assert (shown["id"], shown["buy"]["exchange"], shown["max_buy"]["exchange"]) == (row.pk, "binance", "binance")
    assert viewer_client.get(f"{URL}{row.pk + 1000}/").json()["error"]["code"] == "not_found"


def test_every_viewer_reads_the_same_opportunities_and_anonymous_only_when_public(make_user, client, history, settings):
    settings.PUBLIC_MARKET_DATA = False
    first, second = logged_in(make_user("viewer")), logged_in(make_user("analyst"))

    assert ids(first.get(URL)) == ids(second.get(URL)) != []
    assert client.get(URL).status_code == 401
    assert logged_in(make_user()).get(URL).status_code == 403
    settings.PUBLIC_MARKET_DATA = True
    assert ids(client.get(URL)) == ids(first.get(URL))


def test_the_admin_role_sees_opportunities_in_the_admin_read_only(make_user, history):
    admin = logged_in(make_user("admin"))
    pages = "/admin/market/arbitrageopportunity/"

    open_only = admin.get(pages, {"open": "1"})
    by_exchange = admin.get(
        pages, {"buy_instrument__exchange__id__exact": history["BTC/USDT"].buy_instrument.exchange_id}
    )

    assert open_only.status_code == by_exchange.status_code == 200
    assert b"ETH/USDT" in open_only.content
    assert b"BTC/USDT" not in open_only.content
    assert b"BTC/USDT" in by_exchange.content
    assert b"ETH/USDT" not in by_exchange.content
    assert admin.get(f"{pages}{history['BTC/USDT'].pk}/change/").status_code == 200
    assert admin.get(f"{pages}add/").status_code == 403
    assert logged_in(make_user("viewer")).get(pages).status_code == 302


# --- The live channel ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_thread_connections")
async def test_a_detected_opportunity_reaches_a_websocket_subscriber(instruments, settings):
    settings.PUBLIC_MARKET_DATA = True
    communicator = WebsocketCommunicator(application, "/ws/v1/market/", headers=[(b"host", b"127.0.0.1")])
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    await communicator.send_json_to({"action": "subscribe", "channel": "arbitrage"})
    assert (await communicator.receive_json_from(timeout=5))["type"] == "subscribed"

    found = opportunity(instruments, "BTC/USDT", "binance", "kraken", 12, T0)
    await sync_to_async(track_opportunities)([found], T0)

    frame = await communicator.receive_json_from(timeout=5)
    row = await ArbitrageOpportunity.objects.aget()
    assert frame == {
        "type": "arbitrage",
        "event": "opened",
        "id": row.pk,
        "symbol": "BTC/USDT",
        "buy": {"exchange": "binance", "instrument": found.buy_instrument_id, "price": 100.0},
        "sell": {"exchange": "kraken", "instrument": found.sell_instrument_id, "price": 100.12},
        "spread_bps": 12.0,
        "gross_spread_bps": 32.0,
        "max_spread_bps": 12.0,
        "at": "2026-11-02T09:00:00Z",
    }
    await communicator.disconnect()

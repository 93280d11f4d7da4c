"""Arbitrage tracking (market.arbitrage_services): opportunities opened, updated and closed in the
database and on the `arbitrage` channel; detection on stored bars, through the service, the beat task
and the command.

No recording in sample_data has one pair on two venues at the same time (BINANCE.ws.1.0 and
BINANCE_US.ws.1.0 are both 2021-10-12, minutes apart, but share no symbol), so the second venue here
is CONSTRUCTED: frequi's real BTC/USDT 1m candles are stored as binance's, and "kraken" gets the same
candles with its closes moved by a chosen number of basis points.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from io import StringIO
from typing import Any

import orjson
import pandas as pd
import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.management import CommandError, call_command
from django.utils import timezone

from market.arbitrage import DetectionParams, Opportunity
from market.arbitrage_services import detect_arbitrage, latest_quotes, track_opportunities
from market.barstore import BarRow
from market.groups import ARBITRAGE_GROUP
from market.models import ArbitrageOpportunity, Exchange, Instrument
from market.services import store_bars
from market.tasks import detect_arbitrage_task
from market.tests.conftest import SAMPLE_DATA

pytestmark = pytest.mark.django_db(transaction=True)  # frames are published once committed

T0 = datetime(2023, 5, 8, 10, 27, tzinfo=UTC)
NO_FEES = DetectionParams(min_net_bps=5, max_age_seconds=120, default_fee_bps=0)


@pytest.fixture
def venues() -> dict[str, Instrument]:
    binance = Exchange.objects.create(code="binance", name="Binance")
    kraken = Exchange.objects.create(code="kraken", name="Kraken")
    return {
        "binance": Instrument.objects.create(exchange=binance, symbol="BTC/USDT"),
        "kraken": Instrument.objects.create(exchange=kraken, symbol="BTC/USDT"),
    }


def found(venues: dict[str, Instrument], net_bps: float, at: datetime, *, buy: str = "binance") -> Opportunity:
    sell = "kraken" if buy == "binance" else "binance"
    return Opportunity(
        base="BTC",
        quote="USDT",
        buy_venue=buy,
        buy_instrument_id=venues[buy].pk,
        buy_price=100.0,
        sell_venue=sell,
        sell_instrument_id=venues[sell].pk,
        sell_price=100.0 * (1 + net_bps / 10_000),
        gross_bps=net_bps,
        net_bps=net_bps,
        observed_at=at.timestamp(),
    )


def frames_after(action: Any) -> list[dict[str, Any]]:
    """The arbitrage frames a member of the `arbitrage` group receives for what `action()` does."""
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(ARBITRAGE_GROUP, channel)
    action()

    async def drain() -> list[dict[str, Any]]:
        received = []
        while True:
            try:
                received.append(orjson.loads((await asyncio.wait_for(layer.receive(channel), 0.5))["text"]))
            except TimeoutError:
                return received

    frames = async_to_sync(drain)()
    async_to_sync(layer.group_discard)(ARBITRAGE_GROUP, channel)
    return frames


# --- Tracking ----------------------------------------------------------------------------------


def test_an_opportunity_opens_grows_and_closes_with_a_frame_each_time(venues):
    minute = timedelta(minutes=1)

    opened = frames_after(lambda: track_opportunities([found(venues, 20, T0)], T0))
    row = ArbitrageOpportunity.objects.get()
    assert (row.symbol, row.first_net_bps, row.max_net_bps, row.closed_at, row.updates) == ("BTC/USDT", 20, 20, None, 0)
    assert [(f["type"], f["event"], f["id"], f["spread_bps"]) for f in opened] == [("arbitrage", "opened", row.pk, 20)]
    assert opened[0]["buy"] == {"exchange": "binance", "instrument": venues["binance"].pk, "price": 100.0}
    assert opened[0]["at"] == "2023-05-08T10:27:00Z"

    updated = frames_after(lambda: track_opportunities([found(venues, 35, T0 + minute)], T0 + minute))
    row.refresh_from_db()
    assert (row.first_net_bps, row.last_net_bps, row.max_net_bps, row.updates) == (20, 35, 35, 1)
    assert row.max_at == T0 + minute
    assert row.sell_price_at_max == pytest.approx(100.35)
    assert [(f["event"], f["spread_bps"], f["max_spread_bps"]) for f in updated] == [("updated", 35, 35)]

    # A smaller spread updates the latest values and keeps the maximum
    track_opportunities([found(venues, 25, T0 + 2 * minute)], T0 + 2 * minute)
    row.refresh_from_db()
    assert (row.last_net_bps, row.max_net_bps, row.max_at, row.updates) == (25, 35, T0 + minute, 2)

    closed = frames_after(lambda: track_opportunities([], T0 + 3 * minute))
    row.refresh_from_db()
    assert row.closed_at == T0 + 3 * minute
    assert [(f["event"], f["spread_bps"], f["max_spread_bps"], f["at"]) for f in closed] == [
        ("closed", 25, 35, "2023-05-08T10:30:00Z")
    ]
    assert closed[0]["sell"]["exchange"] == "kraken"


def test_the_same_detection_twice_changes_nothing_the_second_time(venues):
    detection = [found(venues, 20, T0)]
    first = track_opportunities(detection, T0)
    before = list(ArbitrageOpportunity.objects.values())

    frames = frames_after(lambda: track_opportunities(detection, T0 + timedelta(seconds=15)))

    assert (first.opened, first.unchanged) == (1, 0)
    assert frames == []
    assert list(ArbitrageOpportunity.objects.values()) == before


def test_closing_twice_closes_once(venues):
    track_opportunities([found(venues, 20, T0)], T0)
    track_opportunities([], T0 + timedelta(minutes=1))

    again = track_opportunities([], T0 + timedelta(minutes=2))

    assert again.closed == 0
    assert ArbitrageOpportunity.objects.get().closed_at == T0 + timedelta(minutes=1)


def test_a_pair_found_again_after_closing_opens_a_new_row(venues):
    track_opportunities([found(venues, 20, T0)], T0)
    track_opportunities([], T0 + timedelta(minutes=1))

    track_opportunities([found(venues, 30, T0 + timedelta(minutes=2))], T0 + timedelta(minutes=2))

    assert [(o.max_net_bps, o.closed_at is None) for o in ArbitrageOpportunity.objects.all()] == [
        (30, True),
        (20, False),
    ]


def test_an_open_opportunity_follows_its_best_venues(venues):
    track_opportunities([found(venues, 20, T0)], T0)

    track_opportunities([found(venues, 10, T0 + timedelta(minutes=1), buy="kraken")], T0 + timedelta(minutes=1))

    row = ArbitrageOpportunity.objects.get()
    assert (row.buy_instrument_id, row.sell_instrument_id) == (venues["kraken"].pk, venues["binance"].pk)
    assert (row.max_buy_instrument_id, row.max_sell_instrument_id) == (venues["binance"].pk, venues["kraken"].pk)


# --- Detection on stored bars (a constructed second venue: see the module docstring) --------------


def frequi_closes() -> pd.Series:
    raw = json.loads((SAMPLE_DATA / "frequi" / "pair_candles_btc_1m.json").read_text())
    return pd.DataFrame(raw["data"], columns=raw["columns"])["close"]


def store_minutes(instrument: Instrument, start: datetime, closes: list[float]) -> None:
    store_bars(
        [
            BarRow(instrument.pk, "1m", start + timedelta(minutes=n), c, c, c, c, 1.0, 1, c, True)
            for n, c in enumerate(closes)
        ],
        publish=False,
    )


# kraken's premium over binance, in bps, minute by minute: none, then 20 to 40 bps for four
# minutes, then none again.
PREMIUM_BPS = [0, 0, 0, 20, 30, 40, 25, 0, 0]


def store_two_venues(venues: dict[str, Instrument], start: datetime) -> list[float]:
    real = frequi_closes().iloc[: len(PREMIUM_BPS)].tolist()
    store_minutes(venues["binance"], start, real)
    store_minutes(venues["kraken"], start, [c * (1 + p / 10_000) for c, p in zip(real, PREMIUM_BPS, strict=True)])
    return real


def test_detection_on_stored_bars_follows_the_spread_minute_by_minute(venues):
    real = store_two_venues(venues, T0)
    runs = []

    for minute in range(len(PREMIUM_BPS)):
        # Each detection 5 s after the minute's bar closed
        runs.append(detect_arbitrage(T0 + timedelta(minutes=minute + 1, seconds=5), NO_FEES))

    assert [(r.tracked.opened, r.tracked.updated, r.tracked.closed) for r in runs] == [
        (0, 0, 0),
        (0, 0, 0),
        (0, 0, 0),
        (1, 0, 0),
        (0, 1, 0),
        (0, 1, 0),
        (0, 1, 0),
        (0, 0, 1),
        (0, 0, 0),
    ]
    row = ArbitrageOpportunity.objects.get()
    assert (row.first_net_bps, row.last_net_bps, row.max_net_bps) == pytest.approx((20, 25, 40))
    assert (row.opened_at, row.max_at) == (T0 + timedelta(minutes=4), T0 + timedelta(minutes=6))
    assert row.closed_at == T0 + timedelta(minutes=8, seconds=5)
    assert (row.buy_price_at_max, row.sell_price_at_max) == pytest.approx((real[5], real[5] * 1.004))


def test_bars_older_than_the_maximum_age_make_no_opportunity(venues):
    # The 20 bps minute is the last stored: it ended at T0 + 4 min
    real = frequi_closes().iloc[:4].tolist()
    store_minutes(venues["binance"], T0, real)
    store_minutes(venues["kraken"], T0, [c * (1 + p / 10_000) for c, p in zip(real, PREMIUM_BPS, strict=False)])
    ended = T0 + timedelta(minutes=4)

    assert len(detect_arbitrage(ended + timedelta(seconds=120), NO_FEES).opportunities) == 1
    stale = detect_arbitrage(ended + timedelta(seconds=121), NO_FEES)
    assert (stale.quotes, stale.opportunities, stale.tracked.closed) == (0, [], 1)


def test_latest_quotes_skip_instruments_quoted_on_one_exchange_only(venues):
    binance = venues["binance"].exchange
    lonely = Instrument.objects.create(exchange=binance, symbol="DOGE/USDT")
    store_minutes(lonely, T0, [0.1])
    store_two_venues(venues, T0)

    quotes = latest_quotes(T0 + timedelta(minutes=1, seconds=5), 120)

    assert sorted(quotes.instrument_id.tolist()) == sorted(i.pk for i in venues.values())
    assert quotes.time.tolist() == [(T0 + timedelta(minutes=1)).timestamp()] * 2


def test_latest_quotes_ignore_inactive_instruments_and_open_bars(venues):
    store_two_venues(venues, T0)
    Instrument.objects.filter(pk=venues["kraken"].pk).update(active=False)

    assert len(latest_quotes(T0 + timedelta(minutes=1), 120)) == 0

    Instrument.objects.filter(pk=venues["kraken"].pk).update(active=True)
    later = T0 + timedelta(minutes=len(PREMIUM_BPS))
    store_bars([BarRow(venues["kraken"].pk, "1m", later, 1.0, 1.0, 1.0, 1.0, 1.0, 1, 1.0, False)], publish=False)
    quotes = latest_quotes(later + timedelta(seconds=30), 120)
    assert 1.0 not in quotes.price.tolist()


def test_the_beat_task_detects_on_the_bars_stored_up_to_now(venues, settings):
    settings.ARBITRAGE_FEES_BPS = {"binance": 10, "kraken": 10}
    settings.ARBITRAGE_MIN_NET_BPS = 5
    # The same real closes, ending with the minute that just closed; kraken 40 bps above at the end
    start = timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=len(PREMIUM_BPS))
    real = frequi_closes().iloc[:3].tolist()
    store_minutes(venues["binance"], start + timedelta(minutes=6), real)
    store_minutes(venues["kraken"], start + timedelta(minutes=6), [c * 1.004 for c in real])

    frames = frames_after(detect_arbitrage_task)

    row = ArbitrageOpportunity.objects.get()
    # (1.004 x 0.999 / 1.001 - 1) x 10,000: 40 bps gross, about 20 net of two 10 bps fees
    assert row.last_net_bps == pytest.approx((1.004 * 0.999 / 1.001 - 1) * 10_000)
    assert row.last_gross_bps == pytest.approx(40.0)
    assert [(f["event"], f["symbol"], f["buy"]["exchange"], f["sell"]["exchange"]) for f in frames] == [
        ("opened", "BTC/USDT", "binance", "kraken")
    ]
    assert detect_arbitrage_task().endswith("0 opened, 0 updated, 0 closed, 1 unchanged")


def test_the_command_prints_what_it_found(venues):
    store_two_venues(venues, T0)
    out = StringIO()

    call_command("detect_arbitrage", "--once", "--now", "2023-05-08T10:33:05", stdout=out)

    lines = out.getvalue().splitlines()
    assert lines[0] == "2 quotes, 1 opportunities: 1 opened, 0 updated, 0 closed, 0 unchanged"
    assert lines[1].startswith("  BTC/USDT: buy on binance at ")
    assert "sell on kraken" in lines[1]


def test_the_command_refuses_a_past_moment_for_repeated_detection(venues):
    with pytest.raises(CommandError, match="--now needs --once"):
        call_command("detect_arbitrage", "--now", "2023-05-08T10:33:05")


# --- Settings ----------------------------------------------------------------------------------


def test_fees_and_quote_equivalents_are_read_from_the_environment(monkeypatch):
    from cryptostock.settings import _quote_equivalents, _venue_numbers

    monkeypatch.setenv("FEES", " binance=10, kraken=26.5 ")
    monkeypatch.setenv("SAME", "usdt=USD,USDC=usd")

    assert _venue_numbers("FEES") == {"binance": 10.0, "kraken": 26.5}
    assert _quote_equivalents("SAME") == {"USDT": "USD", "USDC": "USD"}


@pytest.mark.parametrize("raw", ["binance", "binance=ten", "=10", "binance=-1", "binance=10000"])
def test_a_bad_fee_setting_is_refused_naming_the_variable(monkeypatch, raw):
    from django.core.exceptions import ImproperlyConfigured

    from cryptostock.settings import _venue_numbers

    monkeypatch.setenv("ARBITRAGE_FEES_BPS", raw)
    with pytest.raises(ImproperlyConfigured, match="ARBITRAGE_FEES_BPS="):
        _venue_numbers("ARBITRAGE_FEES_BPS")


@pytest.mark.parametrize("raw", ["USDT", "USDT=", "=USD", "USDT=" + "X" * 21])
def test_a_bad_quote_equivalence_is_refused_naming_the_variable(monkeypatch, raw):
    from django.core.exceptions import ImproperlyConfigured

    from cryptostock.settings import _quote_equivalents

    monkeypatch.setenv("ARBITRAGE_QUOTE_EQUIVALENTS", raw)
    with pytest.raises(ImproperlyConfigured, match="ARBITRAGE_QUOTE_EQUIVALENTS="):
        _quote_equivalents("ARBITRAGE_QUOTE_EQUIVALENTS")

"""Market data over the API beyond bars: admin writes, latest bar and price, snapshot, public reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from hypothesis import given
from hypothesis import strategies as st
from rest_framework_simplejwt.tokens import AccessToken

from market.api.serializers import MAX_ID, BarsQuerySerializer, plain_bars_query
from market.barstore import BarRow
from market.models import Exchange, Instrument
from market.services import store_bars

pytestmark = pytest.mark.django_db

START = datetime(2024, 3, 1, tzinfo=UTC)


@pytest.fixture
def admin_client(make_user) -> Client:
    return Client(headers={"Authorization": f"Bearer {AccessToken.for_user(make_user('admin'))}"})


@pytest.fixture
def bars(instrument):
    rows = [
        BarRow(
            instrument.pk, "1m", START + timedelta(minutes=i), 10.0 + i, 11.0 + i, 9.0 + i, 10.5 + i, 1.0, 3, None, True
        )
        for i in range(5)
    ]
    store_bars(rows, publish=False)
    return rows


def test_an_admin_creates_updates_and_deactivates_an_instrument(admin_client, exchange):
    created = admin_client.post(
        "/api/v1/instruments/", {"exchange": "binance", "symbol": "BTC/USDT"}, content_type="application/json"
    )
    pk = created.json()["id"]
    renamed = admin_client.patch(f"/api/v1/instruments/{pk}/", {"name": "Bitcoin"}, content_type="application/json")
    deactivated = admin_client.post(f"/api/v1/instruments/{pk}/deactivate/")

    assert created.status_code == 201
    assert created.json()["base"] == "BTC"
    assert renamed.json()["name"] == "Bitcoin"
    assert deactivated.json()["active"] is False
    assert Instrument.objects.get(pk=pk).active is False


def test_an_instrument_cannot_be_deleted(admin_client, instrument):
    assert admin_client.delete(f"/api/v1/instruments/{instrument.pk}/").status_code == 405
    assert Instrument.objects.filter(pk=instrument.pk).exists()


def test_a_duplicate_symbol_on_one_exchange_is_refused(admin_client, instrument):
    response = admin_client.post(
        "/api/v1/instruments/", {"exchange": "binance", "symbol": "XRP/ETH"}, content_type="application/json"
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"


def test_an_admin_adds_an_exchange_with_a_known_time_zone_only(admin_client, db):
    bad = admin_client.post(
        "/api/v1/exchanges/",
        {"code": "nyse", "name": "NYSE", "timezone": "Mars/Olympus"},
        content_type="application/json",
    )
    good = admin_client.post(
        "/api/v1/exchanges/",
        {"code": "nyse", "name": "NYSE", "timezone": "America/New_York"},
        content_type="application/json",
    )

    assert bad.status_code == 400
    assert "timezone" in bad.json()["error"]["fields"]
    assert good.status_code == 201
    assert Exchange.objects.get(code="nyse").timezone == "America/New_York"


@pytest.mark.parametrize(
    ("url", "body", "field"),
    [
        ("/api/v1/exchanges/", {"code": "nyse", "name": 42}, "name"),
        ("/api/v1/exchanges/", {"code": 7, "name": "NYSE"}, "code"),
        ("/api/v1/instruments/", {"exchange": "binance", "symbol": "ETH/USDT", "base": 1.5}, "base"),
    ],
)
def test_a_number_where_text_belongs_is_refused_not_turned_into_text(admin_client, instrument, url, body, field):
    response = admin_client.post(url, body, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {field: ["Not a valid string."]}


def test_instruments_filter_by_exchange_asset_class_and_active(viewer_client, instrument):
    Instrument.objects.create(exchange=instrument.exchange, symbol="OLD/ETH", active=False)

    def symbols(query: str) -> list[str]:
        return [row["symbol"] for row in viewer_client.get(f"/api/v1/instruments/?{query}").json()["results"]]

    assert symbols("active=true") == ["XRP/ETH"]
    assert symbols("active=false") == ["OLD/ETH"]
    assert symbols("exchange=binance&search=") == ["OLD/ETH", "XRP/ETH"]
    assert symbols("asset_class=stock") == []
    assert viewer_client.get("/api/v1/instruments/?active=maybe").status_code == 400


def test_latest_gives_the_newest_bar_and_its_close(viewer_client, instrument, bars):
    body = viewer_client.get(f"/api/v1/instruments/{instrument.pk}/latest/").json()

    assert body["bar"]["time"] == int(bars[-1].time.timestamp())
    assert body["price"] == bars[-1].close
    assert body["symbol"] == "XRP/ETH"
    assert body["exchange"] == "binance"


def test_latest_of_an_instrument_without_bars_is_null(viewer_client, instrument):
    body = viewer_client.get(f"/api/v1/instruments/{instrument.pk}/latest/?timeframe=1h").json()

    assert body["bar"] is None
    assert body["price"] is None
    assert body["timeframe"] == "1h"


def test_the_snapshot_gives_each_instrument_in_the_order_asked(viewer_client, instrument, bars):
    other = Instrument.objects.create(exchange=instrument.exchange, symbol="ETH/BTC")

    body = viewer_client.get(f"/api/v1/snapshot/?instruments={other.pk},{instrument.pk},{other.pk}").json()

    assert [row["instrument"] for row in body["instruments"]] == [other.pk, instrument.pk]
    assert body["instruments"][1]["price"] == bars[-1].close
    assert body["instruments"][0]["bar"] is None


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("instruments=999999", "no instruments with ids 999999"),
        ("instruments=1,x", "not a list of instrument ids"),
        ("instruments=", "may not be blank"),
        ("instruments=" + ",".join(str(i) for i in range(1, 102)), "at most 100"),
        ("", "required"),
    ],
)
def test_the_snapshot_names_what_is_wrong_with_the_request(viewer_client, instrument, query, words):
    response = viewer_client.get(f"/api/v1/snapshot/?{query}")

    assert response.status_code == 400
    assert words in response.json()["error"]["message"]


def test_market_data_reads_are_public_only_when_configured(client, settings, instrument, bars):
    settings.PUBLIC_MARKET_DATA = False
    assert client.get("/api/v1/bars/", {"instrument": instrument.pk}).status_code == 401

    settings.PUBLIC_MARKET_DATA = True
    assert client.get("/api/v1/bars/", {"instrument": instrument.pk}).status_code == 200
    assert client.get(f"/api/v1/instruments/{instrument.pk}/latest/").status_code == 200
    # Writes never are.
    assert (
        client.post("/api/v1/exchanges/", {"code": "x", "name": "X"}, content_type="application/json").status_code
        == 401
    )


def test_bars_are_rendered_as_json_numbers(viewer_client, instrument, bars):
    response = viewer_client.get("/api/v1/bars/", {"instrument": instrument.pk})

    assert response["Content-Type"] == "application/json"
    assert response.content.startswith(b'{"instrument":')
    assert response.json()["bars"][0] == {
        "time": int(START.timestamp()),
        "open": 10.0,
        "high": 11.0,
        "low": 9.0,
        "close": 10.5,
        "volume": 1.0,
        "trades": 3,
        "vwap": None,
        "final": True,
    }


def test_bar_prices_come_back_exactly_as_stored(viewer_client, instrument):
    """The rows travel from PostgreSQL in binary (market.queries): the same doubles, written by orjson."""
    prices = (40123.45, 40123.46, 0.00001234, 0.1 + 0.2)  # open, high, low, close: low <= open/close <= high
    opened = START + timedelta(minutes=1)
    store_bars([BarRow(instrument.pk, "1m", opened, *prices, 1e-8, None, 12345.678, False)], publish=False)

    response = viewer_client.get("/api/v1/bars/", {"instrument": instrument.pk})

    assert response.json()["bars"] == [
        {
            "time": int(opened.timestamp()),
            "open": 40123.45,
            "high": 40123.46,
            "low": 0.00001234,
            "close": 0.30000000000000004,
            "volume": 1e-8,
            "trades": None,
            "vwap": 12345.678,
            "final": False,
        }
    ]
    assert b'"close":0.30000000000000004' in response.content


NUMBERS = st.one_of(
    st.sampled_from(["1", "0", "01", "5000", "5001", str(MAX_ID), str(MAX_ID + 1), " 1", "1 ", "+1", "1.0", "-1"]),
    st.from_regex(r"[0-9]{1,21}", fullmatch=True),
    st.text(max_size=3),
)
# Mostly values the serializer accepts, so that the plain reading is taken often; a few it refuses.
BARS_QUERIES = st.fixed_dictionaries(
    {},
    optional={
        "instrument": NUMBERS,
        "timeframe": st.one_of(st.sampled_from(["1m", "5m", "15m", "1h", "4h", "1d"]), st.text(max_size=3)),
        "limit": NUMBERS,
        "order": st.one_of(st.sampled_from(["asc", "desc", "ASC", ""]), st.text(max_size=3)),
        "start": st.sampled_from(["2024-01-01T00:00:00Z", "2024-01-01", "x"]),
        "end": st.sampled_from(["2024-02-01T00:00:00Z", "x"]),
        "x": st.text(max_size=3),
    },
)


@given(BARS_QUERIES)
def test_the_plain_bars_query_is_read_exactly_as_the_serializer_reads_it(query):
    serializer = BarsQuerySerializer(data=query)
    valid = serializer.is_valid()

    plain = plain_bars_query(query)

    if plain is not None:  # taken without the serializer: only what it accepts, read the same way
        assert valid
        assert plain == dict(serializer.validated_data)


def test_the_usual_chart_query_is_read_without_the_serializer():
    assert plain_bars_query({"instrument": "7", "timeframe": "5m", "limit": "300"}) == {
        "instrument": 7,
        "timeframe": "5m",
        "limit": 300,
        "order": "asc",
    }

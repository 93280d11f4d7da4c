"""The API seed: instruments and bars under /api/v1/, validated, with one error shape."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from market.barstore import BarRow
from market.services import store_bars

pytestmark = pytest.mark.django_db


@pytest.fixture
def real_bars(instrument, sample_data):
    """The first 100 real XRP/ETH 1m candles, stored."""
    frame = pd.read_feather(sample_data / "freqtrade" / "XRP_ETH-1m.feather").head(100)
    rows = [
        BarRow(instrument.pk, "1m", t.to_pydatetime(), o, h, low, c, v, None, None, True)
        for t, o, h, low, c, v in frame.itertuples(index=False)
    ]
    store_bars(rows, publish=False)
    return frame


def test_it_lists_and_shows_instruments(viewer_client, instrument):
    listed = viewer_client.get("/api/v1/instruments/").json()
    assert listed["count"] == 1
    assert listed["results"][0] == {
        "id": instrument.pk,
        "exchange": "binance",
        "symbol": "XRP/ETH",
        "name": "",
        "asset_class": "crypto",
        "base": "XRP",
        "quote": "ETH",
        "active": True,
    }
    assert viewer_client.get(f"/api/v1/instruments/{instrument.pk}/").json()["symbol"] == "XRP/ETH"
    assert viewer_client.get("/api/v1/instruments/?search=xrp").json()["count"] == 1
    assert viewer_client.get("/api/v1/instruments/?search=btc").json()["count"] == 0


def test_it_returns_bars_in_a_range_oldest_first(viewer_client, instrument, real_bars):
    start = real_bars["date"].iloc[10].isoformat()
    end = real_bars["date"].iloc[20].isoformat()
    body = viewer_client.get("/api/v1/bars/", {"instrument": instrument.pk, "start": start, "end": end}).json()
    bars = body["bars"]
    assert len(bars) == 10
    assert bars[0]["time"] == int(real_bars["date"].iloc[10].timestamp())
    assert [bar["close"] for bar in bars] == real_bars["close"].iloc[10:20].tolist()


def test_without_start_it_returns_the_newest_bars_oldest_first(viewer_client, instrument, real_bars):
    bars = viewer_client.get("/api/v1/bars/", {"instrument": instrument.pk, "limit": 5}).json()["bars"]
    assert [bar["time"] for bar in bars] == [int(t.timestamp()) for t in real_bars["date"].iloc[-5:]]
    newest_first = viewer_client.get("/api/v1/bars/", {"instrument": instrument.pk, "limit": 5, "order": "desc"}).json()
    assert newest_first["bars"] == list(reversed(bars))


@pytest.mark.parametrize(
    ("params", "field", "words"),
    [
        ({"timeframe": "2m"}, "timeframe", "not a valid choice"),
        ({"limit": 10**9}, "limit", "at most"),
        ({"limit": 0}, "limit", "greater than or equal to 1"),
        ({"start": "yesterday"}, "start", "Datetime has wrong format"),
        ({"start": "2019-10-12T00:00:00Z", "end": "2019-10-11T00:00:00Z"}, "end", "end must be after start"),
    ],
)
def test_it_rejects_bad_bar_parameters_naming_the_parameter(viewer_client, instrument, params, field, words):
    response = viewer_client.get("/api/v1/bars/", {"instrument": instrument.pk, **params})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert field in error["fields"]
    assert words in error["message"]


def test_it_rejects_an_unknown_or_missing_instrument(viewer_client, db):
    unknown = viewer_client.get("/api/v1/bars/", {"instrument": 424242})
    assert unknown.status_code == 400
    assert "no instrument with id 424242" in unknown.json()["error"]["message"]
    missing = viewer_client.get("/api/v1/bars/")
    assert missing.status_code == 400
    assert "instrument" in missing.json()["error"]["fields"]


def test_an_unknown_api_version_is_not_found(viewer_client, db):
    assert viewer_client.get("/api/v2/instruments/").status_code == 404


def test_the_openapi_schema_swagger_ui_and_redoc_are_served_to_anyone(client, db):
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    assert b"/api/{version}/bars/" in schema.content or b"/api/v1/bars/" in schema.content
    assert client.get("/api/docs/").status_code == 200
    assert client.get("/api/redoc/").status_code == 200


def test_bar_times_are_utc_epoch_seconds(viewer_client, instrument, real_bars):
    bar = viewer_client.get("/api/v1/bars/", {"instrument": instrument.pk, "limit": 1, "order": "desc"}).json()["bars"][
        0
    ]
    assert datetime.fromtimestamp(bar["time"], tz=UTC) == real_bars["date"].iloc[-1].to_pydatetime()


def test_the_bars_body_is_the_payload_of_the_same_rows_byte_for_byte(instrument):
    """The endpoint encodes rows as structs (market.queries.encode_bars_body); the WebSocket snapshot
    and `latest` send `bars_payload`'s dicts: both must say the same, down to the bytes."""
    from datetime import timedelta

    import orjson

    from market.queries import bars_payload, encode_bars_body, ordered_bar_rows

    start = datetime(2024, 1, 1, tzinfo=UTC)
    store_bars(
        [
            BarRow(instrument.pk, "1m", start, 0.00001234, 0.00001301, 0.00001199, 0.0000125, 1e9, None, None, True),
            BarRow(
                instrument.pk,
                "1m",
                start + timedelta(minutes=1),
                40000.1,
                40010.5,
                39990.25,
                40005.75,
                0.0,
                0,
                3.3,
                True,
            ),
            BarRow(
                instrument.pk, "1m", start + timedelta(minutes=2), 100.0, 100.0, 100.0, 100.0, 12.5, 7, 100.0, False
            ),
        ]
    )
    for order in (False, True):
        rows = ordered_bar_rows(instrument.pk, "1m", start=start, end=None, limit=10, newest_first=order)
        dicts = bars_payload(instrument.pk, "1m", start=start, limit=10, newest_first=order)

        body = encode_bars_body(instrument.pk, "1m", rows)

        assert body == orjson.dumps({"instrument": instrument.pk, "timeframe": "1m", "bars": dicts})

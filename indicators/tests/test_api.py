"""The indicator and feature endpoints, on real candles stored in the database."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest
from django.core.cache import cache

from indicators import cache as indicator_cache
from indicators.catalogue import IndicatorSpec
from indicators.compute import compute
from indicators.features import FEATURES, compute_features
from indicators.series import Bars
from indicators.tests.conftest import rows_of
from market.services import store_bars

pytestmark = pytest.mark.django_db

STORED = 3000


@pytest.fixture
def stored(instrument, btc_1m) -> Bars:
    """The first 3,000 real 1m candles of UNITTEST/BTC, stored; the cache starts empty."""
    bars = btc_1m.slice(0, STORED)
    store_bars(rows_of(instrument.pk, bars), publish=False)
    cache.clear()
    return bars


def iso(seconds: int) -> str:
    return datetime.fromtimestamp(int(seconds), tz=UTC).isoformat()


def get_indicators(client: Any, instrument: Any, **query: Any) -> Any:
    return client.get(f"/api/v1/instruments/{instrument.pk}/indicators/", query)


def test_the_catalogue_lists_every_indicator_with_defaults(viewer_client, db):
    body = viewer_client.get("/api/v1/indicators/").json()
    names = [item["name"] for item in body["indicators"]]
    assert len(names) == 13
    macd = next(item for item in body["indicators"] if item["name"] == "macd")
    assert [p["name"] for p in macd["params"]] == ["fast", "slow", "signal", "source"]
    assert [o["name"] for o in macd["outputs"]] == ["macd", "signal", "hist"]


def test_the_feature_catalogue_lists_every_feature(viewer_client, db):
    assert len(viewer_client.get("/api/v1/features/").json()["features"]) == len(FEATURES)


def test_a_range_in_the_middle_has_the_values_of_a_computation_over_all_history(viewer_client, instrument, stored):
    # Given 3,000 stored bars, when the range 2,000..2,499 is asked for
    start, end = stored.time[2000], stored.time[2500]
    body = get_indicators(
        viewer_client, instrument, names="rsi,macd,adx,obv,vwap,ema", start=iso(start), end=iso(end)
    ).json()
    # Then the times are those bars' and every value equals the one computed from the first bar on
    assert body["time"] == stored.time[2000:2500].tolist()
    for key in ("rsi", "macd", "adx", "obv", "vwap", "ema"):
        full = compute(IndicatorSpec.build(key), stored)
        for output, values in body["indicators"][key]["outputs"].items():
            np.testing.assert_allclose(np.array(values, dtype=float), full[output][2000:2500], rtol=1e-9)


def test_values_before_the_warm_up_are_null_and_no_earlier(viewer_client, instrument, stored):
    body = get_indicators(viewer_client, instrument, names="rsi,macd", start=iso(stored.time[0]), limit=100).json()
    rsi = body["indicators"]["rsi"]["outputs"]["rsi"]
    assert rsi[:14] == [None] * 14
    assert None not in rsi[14:]
    assert body["indicators"]["macd"]["warmup"] == 33
    assert body["indicators"]["macd"]["outputs"]["signal"][32:34][0] is None


def test_without_start_the_newest_bars_are_returned(viewer_client, instrument, stored):
    body = get_indicators(viewer_client, instrument, names="sma", limit=50).json()
    assert body["time"] == stored.time[-50:].tolist()


def test_labels_repeat_an_indicator_with_other_parameters(viewer_client, instrument, stored):
    body = get_indicators(
        viewer_client, instrument, names="ema@fast,ema@slow", params="ema@fast.length=10,ema@slow.length:50", limit=10
    ).json()
    fast, slow = body["indicators"]["ema@fast"], body["indicators"]["ema@slow"]
    assert (fast["params"]["length"], slow["params"]["length"]) == (10, 50)
    expected = compute(IndicatorSpec.build("ema", {"length": 50}), stored)["ema"][-10:]
    np.testing.assert_allclose(slow["outputs"]["ema"], expected, rtol=1e-9)


@pytest.mark.parametrize(
    ("query", "field", "words"),
    [
        ({"names": "rsi,foo"}, "names", "unknown indicator 'foo'"),
        ({"names": ""}, "names", ""),
        ({"names": "rsi", "params": "rsi.length=1"}, "params", "rsi.length: must be between 2"),
        ({"names": "rsi", "params": "rsi.window=10"}, "params", "rsi.window"),
        ({"names": "rsi", "params": "macd.fast=10"}, "params", "not in names"),
        ({"names": "rsi", "params": "rsi-length"}, "params", "indicator.parameter=value"),
        ({"names": "macd", "params": "macd.fast=40"}, "params", "macd.fast: must be less than slow"),
        ({"names": "rsi", "timeframe": "2m"}, "timeframe", ""),
        ({"names": "rsi", "start": "2024-01-02", "end": "2024-01-01"}, "end", "after start"),
        ({"names": "rsi", "limit": "0"}, "limit", ""),
    ],
)
def test_bad_parameters_are_named_in_the_error(viewer_client, instrument, query, field, words):
    response = get_indicators(viewer_client, instrument, **query)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert field in error["fields"]
    assert words in str(error["fields"][field])


def test_an_unknown_instrument_is_not_found(viewer_client, db):
    response = viewer_client.get("/api/v1/instruments/999999/indicators/", {"names": "rsi"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_anonymous_callers_are_not_let_in(client, instrument):
    assert get_indicators(client, instrument, names="rsi").status_code == 401


# --- the cache ------------------------------------------------------------------------------------


@pytest.fixture
def computed_chunks(monkeypatch):
    """Records which chunks each request had to compute."""
    calls: list[list[int]] = []
    original = indicator_cache._compute_chunks

    def spy(request, specs, missing, prints, history):
        calls.append(list(missing))
        return original(request, specs, missing, prints, history)

    monkeypatch.setattr(indicator_cache, "_compute_chunks", spy)
    return calls


def test_a_repeated_request_is_served_from_the_cache(viewer_client, instrument, stored, computed_chunks):
    first = get_indicators(viewer_client, instrument, names="rsi,bbands", limit=2500).json()
    second = get_indicators(viewer_client, instrument, names="rsi,bbands", limit=2500).json()
    assert len(computed_chunks) == 1
    assert second == first


def test_a_new_bar_invalidates_only_the_chunk_it_lands_in(viewer_client, instrument, stored, btc_1m, computed_chunks):
    # Given a range of three chunks computed and cached
    get_indicators(viewer_client, instrument, names="rsi,macd", start=iso(stored.time[0]), limit=STORED)
    newest_chunk = indicator_cache.chunk_of(int(stored.time[-1]), 60)
    # When the next bar is stored
    store_bars(rows_of(instrument.pk, btc_1m.slice(STORED, STORED + 1)), publish=False)
    body = get_indicators(
        viewer_client, instrument, names="rsi,macd", start=iso(stored.time[0]), limit=STORED + 1
    ).json()
    # Then only the newest chunk is computed again, and the new bar has its values
    assert computed_chunks[1] == [newest_chunk]
    expected = compute(IndicatorSpec.build("rsi"), btc_1m.slice(0, STORED + 1))["rsi"][-1]
    assert body["indicators"]["rsi"]["outputs"]["rsi"][-1] == pytest.approx(expected, rel=1e-12)


def test_a_corrected_old_bar_invalidates_its_chunk_and_those_after_it(
    viewer_client, instrument, stored, computed_chunks
):
    get_indicators(viewer_client, instrument, names="rsi", start=iso(stored.time[0]), limit=STORED)
    corrected = rows_of(instrument.pk, stored.slice(500, 501))[0]._replace(close=stored.high[500])
    store_bars([corrected], publish=False)
    get_indicators(viewer_client, instrument, names="rsi", start=iso(stored.time[0]), limit=STORED)
    first_chunk = indicator_cache.chunk_of(int(stored.time[500]), 60)
    assert computed_chunks[1][0] == first_chunk
    assert len(computed_chunks[1]) >= 1


# --- features -------------------------------------------------------------------------------------


def test_features_as_json_equal_a_computation_over_all_history(viewer_client, instrument, stored):
    start, end = stored.time[2500], stored.time[2600]
    body = viewer_client.get(
        f"/api/v1/instruments/{instrument.pk}/features/", {"start": iso(start), "end": iso(end)}
    ).json()
    full = compute_features(stored).iloc[2500:2600]
    assert body["time"] == stored.time[2500:2600].tolist()
    assert set(body["features"]) == set(full.columns)
    for name, values in body["features"].items():
        np.testing.assert_allclose(np.array(values, dtype=float), full[name].to_numpy(), rtol=1e-9, err_msg=name)


def test_features_download_as_parquet(viewer_client, instrument, stored):
    response = viewer_client.get(
        f"/api/v1/instruments/{instrument.pk}/features/", {"format": "parquet", "limit": 200, "names": "rsi_14,ret_1"}
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "application/vnd.apache.parquet"
    frame = pd.read_parquet(io.BytesIO(response.content))
    assert list(frame.columns) == ["rsi_14", "ret_1"]
    assert len(frame) == 200


def test_an_unknown_feature_is_named_in_the_error(viewer_client, instrument, stored):
    response = viewer_client.get(f"/api/v1/instruments/{instrument.pk}/features/", {"names": "ret_1,nope"})
    assert response.status_code == 400
    assert "nope" in str(response.json()["error"]["fields"]["names"])


def test_the_export_command_writes_the_feature_matrix_to_parquet(instrument, stored, tmp_path):
    from django.core.management import call_command

    path = tmp_path / "features.parquet"
    call_command(
        "export_features", str(instrument.pk), str(path), "--start", iso(stored.time[2900]), stdout=io.StringIO()
    )
    frame = pd.read_parquet(path)
    assert len(frame) == 100
    assert len(frame.columns) == len(FEATURES)


@pytest.fixture
def stock(db):
    """A stock with one bar (typical price = its number, volume 1) around the 2024 Independence Day."""
    from market.models import AssetClass, Exchange, Instrument

    exchange = Exchange.objects.create(code="alpaca", name="Alpaca", timezone="America/New_York")
    aapl = Instrument.objects.create(exchange=exchange, symbol="AAPL", asset_class=AssetClass.STOCK)
    times = [
        "2024-07-03 12:00",  # 08:00 New York: pre-market
        "2024-07-03 16:00",  # 12:00: regular (the day closes early, at 13:00)
        "2024-07-03 18:00",  # 14:00: after-hours on an early-close day
        "2024-07-04 14:00",  # 10:00 on the holiday: no session
        "2024-07-05 08:00",  # 04:00: the next session's pre-market begins
        "2024-07-05 19:30",  # 15:30: regular
    ]
    seconds = pd.to_datetime(times, utc=True).as_unit("s").asi8
    price = np.arange(1.0, 7.0)
    store_bars(rows_of(aapl.pk, Bars.from_columns(seconds, price, price, price, price, np.ones(6))), publish=False)
    cache.clear()
    return aapl


def test_a_stocks_session_flags_come_from_the_exchange_calendar(viewer_client, stock):
    names = "market_pre,market_regular,market_post"
    body = viewer_client.get(f"/api/v1/instruments/{stock.pk}/features/", {"names": names}).json()
    assert body["features"]["market_pre"] == [1, 0, 0, 0, 1, 0]
    assert body["features"]["market_regular"] == [0, 1, 0, 0, 0, 1]
    assert body["features"]["market_post"] == [0, 0, 1, 0, 0, 0]


def test_a_stocks_vwap_restarts_with_each_session_and_not_on_the_holiday(viewer_client, stock):
    body = get_indicators(viewer_client, stock, names="vwap").json()
    assert body["indicators"]["vwap"]["outputs"]["vwap"] == [1.0, 1.5, 2.0, 2.5, 5.0, 5.5]


@pytest.mark.parametrize("path", ["features", "indicators"])
def test_an_unknown_format_is_named_in_the_error(viewer_client, instrument, stored, path):
    response = viewer_client.get(f"/api/v1/instruments/{instrument.pk}/{path}/", {"names": "rsi", "format": "xml"})
    assert response.status_code == 400
    assert "xml" in str(response.json()["error"]["fields"]["format"])

"""ML features: documented, free of lookahead, exportable to Parquet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from indicators.catalogue import IndicatorSpec
from indicators.compute import Context, compute
from indicators.features import FEATURES, compute_features, feature_history_bars, parquet_bytes, write_parquet
from indicators.series import Bars
from indicators.tests.conftest import bars_at

DOCS = Path(__file__).resolve().parents[2] / "docs" / "ml_features.md"


def test_there_are_more_than_60_features_with_unique_names():
    names = [feature.name for feature in FEATURES]
    assert len(names) >= 60
    assert len(set(names)) == len(names)


def test_every_feature_is_documented_with_its_description_and_formula():
    text = DOCS.read_text()
    for feature in FEATURES:
        row = f"| `{feature.name}` | {feature.description} | `{feature.formula}` |"
        assert row in text, f"docs/ml_features.md lacks or has an outdated row for {feature.name}"


@pytest.mark.parametrize("stock", [False, True], ids=["crypto", "stock"])
def test_appending_future_bars_changes_no_past_feature_value(stock, btc_1m, nyse):
    context = nyse if stock else Context()
    # Given the features of the first 4,000 bars
    past = compute_features(btc_1m.slice(0, 4000), context)
    # When 2,000 later bars are appended and everything is computed again
    later = compute_features(btc_1m.slice(0, 6000), context)
    # Then every value of the first 4,000 rows is exactly what it was
    pd.testing.assert_frame_equal(later.iloc[:4000], past, check_exact=True)


def test_changing_a_future_bar_changes_no_past_feature_value(btc_1m):
    past = compute_features(btc_1m.slice(0, 3000))
    part = btc_1m.slice(0, 3500)
    shock = np.where(np.arange(3500) >= 3000, 1.5, 1.0)
    shocked = Bars.from_columns(
        part.time, part.open * shock, part.high * shock, part.low * shock, part.close * shock, part.volume * shock**5
    )
    pd.testing.assert_frame_equal(compute_features(shocked).iloc[:3000], past, check_exact=True)


def test_after_the_warm_up_every_feature_has_a_value_on_bars_with_a_range(btc_1m):
    frame = compute_features(btc_1m).iloc[feature_history_bars(60) :]
    has_range = btc_1m.high[feature_history_bars(60) :] > btc_1m.low[feature_history_bars(60) :]
    ranged = frame[has_range]
    assert ranged.notna().all().all(), ranged.columns[ranged.isna().any()].tolist()


def test_session_flags_follow_the_exchanges_clock(nyse):
    # 2024-03-04 is a Monday; New York is UTC-5 that day.
    bars = bars_at("2024-03-04 14:00", "2024-03-04 15:00", "2024-03-04 22:00", "2024-03-09 15:00")
    stock = compute_features(bars, nyse)
    assert stock["market_pre"].tolist() == [1, 0, 0, 0]
    assert stock["market_regular"].tolist() == [0, 1, 0, 0]
    assert stock["market_post"].tolist() == [0, 0, 1, 0]  # 17:00 in New York; the last is a Saturday
    crypto = compute_features(bars)
    assert crypto["market_regular"].sum() == 0
    assert crypto["session_us"].tolist() == [1, 1, 0, 1]


def flags(frame: pd.DataFrame) -> list[str]:
    """Each bar's session part: pre, regular, post or - (closed)."""
    names = {"market_pre": "pre", "market_regular": "regular", "market_post": "post"}
    return [next((names[n] for n in names if row[n]), "-") for _, row in frame[list(names)].iterrows()]


def test_on_a_holiday_no_bar_is_in_any_session(nyse):
    # 2024-07-04 (Thursday) is Independence Day: at 08:30, 10:00 and 16:30 New York time (EDT, UTC-4).
    bars = bars_at("2024-07-04 12:30", "2024-07-04 14:00", "2024-07-04 20:30", "2024-07-05 14:00")
    assert flags(compute_features(bars, nyse)) == ["-", "-", "-", "regular"]


def test_an_early_close_ends_the_regular_session_at_13_00_and_after_hours_at_17_00(nyse):
    # 2024-07-03 closes at 13:00 New York time (17:00 UTC); so does Black Friday, 2024-11-29 (EST: 18:00 UTC).
    bars = bars_at(
        "2024-07-03 16:59",
        "2024-07-03 17:00",
        "2024-07-03 20:59",
        "2024-07-03 21:00",
        "2024-11-29 17:59",
        "2024-11-29 18:00",
        "2024-11-29 21:59",
        "2024-11-29 22:00",
    )
    assert flags(compute_features(bars, nyse)) == ["regular", "post", "post", "-", "regular", "post", "post", "-"]


def test_session_flags_move_with_daylight_saving_time(nyse):
    # New York moves to EDT on Sunday 2024-03-10: the open is 14:30 UTC on the Friday, 13:30 on the Monday.
    bars = bars_at("2024-03-08 09:00", "2024-03-08 14:00", "2024-03-08 14:30", "2024-03-11 08:00", "2024-03-11 13:30")
    assert flags(compute_features(bars, nyse)) == ["pre", "pre", "regular", "pre", "regular"]


def test_session_vwap_restarts_when_a_session_begins_and_not_on_a_holiday(nyse):
    # Given bars whose typical price is the bar's number, each with volume 1
    times = ["2024-07-03 12:00", "2024-07-03 16:00", "2024-07-03 18:00", "2024-07-04 14:00", "2024-07-05 08:00"]
    seconds = pd.to_datetime(times, utc=True).as_unit("s").asi8
    price = np.arange(1.0, 6.0)
    bars = Bars.from_columns(seconds, price, price, price, price, np.ones(5))
    # When the session VWAP is computed for a stock
    vwap = compute(IndicatorSpec.build("vwap"), bars, nyse)["vwap"]
    # Then the holiday bar continues the early-close day's VWAP; the 5th's pre-market (04:00 EDT) restarts it
    assert vwap.tolist() == [1.0, 1.5, 2.0, 2.5, 5.0]


def test_a_feature_matrix_round_trips_through_parquet_with_its_documentation(btc_1m, tmp_path):
    frame = compute_features(btc_1m.slice(0, 2000))
    path = tmp_path / "features.parquet"
    write_parquet(frame, path, instrument="BTC/USDT", timeframe="1m")
    back = pd.read_parquet(path)
    pd.testing.assert_frame_equal(back, frame, check_freq=False)
    schema = pq.read_schema(path)
    assert schema.field("rsi_14").metadata[b"formula"] == b"RSI(14) / 100"
    assert schema.metadata[b"timeframe"] == b"1m"
    assert parquet_bytes(frame)[:4] == b"PAR1"


def test_flat_bars_give_nan_ratios_not_infinities():
    times = np.arange(0, 100 * 60, 60)
    ones = np.ones(100)
    frame = compute_features(Bars.from_columns(times, ones, ones, ones, ones, np.zeros(100)))
    assert not np.isinf(frame.to_numpy()).any()

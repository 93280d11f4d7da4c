"""ML features: documented, free of lookahead, exportable to Parquet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from indicators.compute import Context
from indicators.features import FEATURES, compute_features, feature_history_bars, parquet_bytes, write_parquet
from indicators.series import Bars

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


@pytest.mark.parametrize("context", [Context(), Context(session_tz="America/New_York")], ids=["crypto", "stock"])
def test_appending_future_bars_changes_no_past_feature_value(context, btc_1m):
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


def test_session_flags_follow_the_exchanges_clock():
    # 2024-03-04 is a Monday; New York is UTC-5 that day.
    times = pd.to_datetime(["2024-03-04 14:00", "2024-03-04 15:00", "2024-03-04 22:00", "2024-03-09 15:00"], utc=True)
    bars = Bars.from_columns(times.as_unit("s").asi8, [1.0] * 4, [1.1] * 4, [0.9] * 4, [1.0] * 4, [1.0] * 4)
    stock = compute_features(bars, Context(session_tz="America/New_York"))
    assert stock["market_pre"].tolist() == [1, 0, 0, 0]
    assert stock["market_regular"].tolist() == [0, 1, 0, 0]
    assert stock["market_post"].tolist() == [0, 0, 1, 0]  # 17:00 in New York; the last is a Saturday
    crypto = compute_features(bars)
    assert crypto["market_regular"].sum() == 0
    assert crypto["session_us"].tolist() == [1, 1, 0, 1]


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

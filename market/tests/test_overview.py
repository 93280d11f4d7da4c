"""The numbers of a watchlist row, on real XRP/ETH minutes: last price, day change, sparkline."""

from __future__ import annotations

import pandas as pd
import pytest

from market.overview import (
    DAY_SECONDS,
    SPARKLINE_POINTS,
    collector_state,
    downsample,
    price_decimals,
    sparkline_path,
    summarize_day,
)
from market.tests.conftest import SAMPLE_DATA


@pytest.fixture(scope="module")
def xrp_closes() -> list[tuple[int, float]]:
    frame = pd.read_feather(SAMPLE_DATA / "freqtrade" / "XRP_ETH-1m.feather")
    seconds = frame["date"].astype("int64") // 10**9
    return list(zip(seconds.tolist(), frame["close"].astype(float).tolist(), strict=True))


def test_the_change_is_measured_from_the_last_close_a_day_before_the_newest_bar(xrp_closes):
    summary = summarize_day(xrp_closes)

    frame = pd.DataFrame(xrp_closes, columns=["time", "close"]).set_index("time")
    last_time = frame.index[-1]
    reference = frame.loc[: last_time - DAY_SECONDS, "close"].iloc[-1]  # pandas, not our code
    assert summary.last == frame["close"].iloc[-1]
    assert summary.last_time == last_time
    assert summary.reference == reference
    assert summary.change_percent == pytest.approx((summary.last - reference) / reference * 100)


def test_the_sparkline_covers_the_last_day_and_ends_on_the_newest_close(xrp_closes):
    summary = summarize_day(xrp_closes)

    assert 2 < len(summary.sparkline) <= SPARKLINE_POINTS
    assert summary.sparkline[-1] == xrp_closes[-1]
    assert summary.sparkline[0][0] > xrp_closes[-1][0] - DAY_SECONDS
    times = [time for time, _ in summary.sparkline]
    assert times == sorted(times)


def test_a_series_younger_than_a_day_compares_with_its_first_close():
    summary = summarize_day([(0, 2.0), (60, 2.5), (120, 3.0)])

    assert summary.reference == 2.0
    assert summary.change_percent == pytest.approx(50.0)


def test_one_bar_or_none_has_no_change():
    assert summarize_day([(0, 2.0)]).change_percent is None
    empty = summarize_day([])
    assert (empty.last, empty.change_percent, empty.sparkline) == (None, None, [])


def test_downsampling_keeps_short_series_and_the_last_point():
    points = [(t * 60, float(t)) for t in range(1000)]

    assert downsample(points[:10]) == points[:10]
    assert downsample(points, 10)[-1] == points[-1]
    assert len(downsample(points, 10)) == 10


def test_the_sparkline_path_puts_the_highest_close_at_the_top():
    path = sparkline_path([(0, 1.0), (60, 3.0), (120, 2.0)], width=100, height=10)

    assert path == "M0.0 9.0 L50.0 1.0 L100.0 5.0"
    assert sparkline_path([(0, 1.0)]) == ""
    assert sparkline_path([(0, 1.0), (60, 1.0)], width=10, height=10) == "M0.0 5.0 L10.0 5.0"


@pytest.mark.parametrize(
    ("price", "decimals"),
    [(0.001413, 8), (0.1, 6), (189.5, 3), (43250.12, 2), (1.0, 5), (None, 2)],
)
def test_prices_show_six_significant_digits_and_at_least_two_decimals_above_one(price, decimals):
    assert price_decimals(price) == decimals


def test_an_exchange_feed_is_as_good_as_its_best_fresh_collector():
    assert collector_state([]) == "none"
    assert collector_state([("streaming", True)]) == "stale"
    assert collector_state([("backoff", False), ("streaming", False)]) == "streaming"
    assert collector_state([("streaming", True), ("backoff", False)]) == "backoff"

"""The live path: values carried forward bar by bar equal TA-Lib's batch values over the same bars."""

from __future__ import annotations

import numpy as np
import pytest

from indicators.catalogue import IndicatorSpec, default_specs
from indicators.compute import compute_many
from indicators.live import LiveBar, LiveIndicators, latest_values
from indicators.series import Bars


def bar_at(bars: Bars, i: int) -> LiveBar:
    return LiveBar(int(bars.time[i]), *(float(getattr(bars, c)[i]) for c in ("open", "high", "low", "close", "volume")))


def assert_values_equal_batch(values, specs, bars: Bars, context=None, rtol=1e-9):
    batch = compute_many(specs, bars, context)
    for key, outputs in batch.items():
        for output, series in outputs.items():
            expected, got = series[-1], values[key][output]
            if np.isnan(expected):
                assert got is None, f"{key}.{output} has a value before its warm-up"
            else:
                assert got == pytest.approx(expected, rel=rtol, abs=1e-300), f"{key}.{output}"


def non_default_specs() -> list[IndicatorSpec]:
    return [
        IndicatorSpec.build("ema", {"length": 50, "source": "hlc3"}, key="ema50"),
        IndicatorSpec.build("macd", {"fast": 8, "slow": 21, "signal": 5}, key="macd_fast"),
        IndicatorSpec.build("bbands", {"length": 10, "std_up": 2.5, "std_down": 1.5, "mamode": "ema"}, key="bb"),
        IndicatorSpec.build("stoch", {"k": 5, "smooth_k": 2, "d": 4, "k_mamode": "ema"}, key="stoch_fast"),
        IndicatorSpec.build("cci", {"c": 0.02}, key="cci"),
        IndicatorSpec.build("obv", {"source": "hl2"}, key="obv"),
        IndicatorSpec.build("vwap", {"anchor": "week"}, key="vwap_week"),
    ]


@pytest.mark.parametrize("specs", [default_specs(), non_default_specs()], ids=["defaults", "non-defaults"])
def test_given_a_window_when_bars_close_one_by_one_then_every_value_equals_talib_over_the_same_bars(specs, btc_1m):
    window = 800
    live = LiveIndicators(specs, btc_1m.slice(0, window))
    for i in range(window, window + 1500):
        values = live.update(bar_at(btc_1m, i))
        if i % 250 == 0 or i == window + 1499:
            assert_values_equal_batch(values, specs, btc_1m.slice(0, i + 1))


def test_given_fewer_bars_than_the_warm_up_then_values_appear_exactly_when_batch_has_them(btc_1m):
    specs = default_specs()
    live = LiveIndicators(specs, btc_1m.slice(0, 2))
    for i in range(2, 60):
        values = live.update(bar_at(btc_1m, i))
        assert_values_equal_batch(values, specs, btc_1m.slice(0, i + 1))


def test_given_an_empty_window_then_the_first_bars_open_the_indicators(btc_1m):
    specs = default_specs()
    live = LiveIndicators(specs, btc_1m.slice(0, 0))
    for i in range(40):
        values = live.update(bar_at(btc_1m, i))
    assert_values_equal_batch(values, specs, btc_1m.slice(0, 40))


def test_vwap_restarts_at_the_exchanges_sessions_as_in_batch(btc_1m, nyse):
    context = nyse
    specs = [IndicatorSpec.build("vwap")]  # auto: session, since the context has a session
    live = LiveIndicators(specs, btc_1m.slice(0, 100), context)
    for i in range(100, 3000):
        values = live.update(bar_at(btc_1m, i))
    assert_values_equal_batch(values, specs, btc_1m.slice(0, 3000), context)


def test_obv_offset_continues_the_series_obv(btc_1m):
    spec = IndicatorSpec.build("obv")
    full = compute_many([spec], btc_1m.slice(0, 1000))["obv"]["obv"]
    window = btc_1m.slice(500, 1000)
    offset = full[500] - window.volume[0]
    assert latest_values([spec], window, obv_offset=offset)["obv"]["obv"] == pytest.approx(full[-1], rel=1e-12)


def test_a_bar_that_is_not_newer_is_refused(btc_1m):
    live = LiveIndicators(default_specs(), btc_1m.slice(0, 100))
    with pytest.raises(ValueError, match="not after"):
        live.update(bar_at(btc_1m, 99))

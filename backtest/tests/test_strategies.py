"""The strategy catalogue: parameters checked by name, signals from the indicator app's values."""

from __future__ import annotations

import numpy as np
import pytest
import talib

from backtest.strategies import STRATEGIES, catalogue_payload, get_strategy
from backtest.tests.conftest import btc_bars
from indicators.catalogue import ParamError


def test_defaults_fill_in_missing_parameters():
    assert get_strategy("sma_cross").resolve({"fast": "5"}) == {"fast": 5, "slow": 30}
    assert get_strategy("buy_and_hold").resolve(None) == {}


@pytest.mark.parametrize(
    ("name", "raw", "param", "message"),
    [
        ("sma_cross", {"fast": 30, "slow": 30}, "fast", "must be less than slow"),
        ("ema_cross", {"slow": 1}, "slow", "must be between 2 and 10000"),
        ("rsi_reversion", {"lower": 80}, "lower", "must be less than upper"),
        ("rsi_reversion", {"upper": 101}, "upper", "must be between 0 and 100"),
        ("bollinger_reversion", {"std": "wide"}, "std", "must be a number"),
        ("buy_and_hold", {"fast": 3}, "fast", "buy_and_hold has no parameter 'fast'"),
        ("martingale", {}, "strategy", "unknown strategy 'martingale'"),
    ],
)
def test_a_bad_parameter_is_refused_by_name(name, raw, param, message):
    with pytest.raises(ParamError, match=message) as raised:
        get_strategy(name).resolve(raw)

    assert raised.value.param == param


def test_the_sma_crossover_is_long_exactly_while_the_fast_average_is_above_the_slow_one():
    bars = btc_bars()
    entries, exits = STRATEGIES["sma_cross"].signals(bars, {"fast": 10, "slow": 30})

    with np.errstate(invalid="ignore"):
        above = talib.SMA(bars.close, 10) > talib.SMA(bars.close, 30)
    assert (entries == above).all()
    assert (exits[29:] == ~above[29:]).all()
    assert not exits[:29].any()  # warm-up: no value, no signal


def test_rsi_reversion_enters_oversold_and_exits_overbought():
    bars = btc_bars()
    entries, exits = STRATEGIES["rsi_reversion"].signals(bars, {"period": 14, "lower": 25.0, "upper": 75.0})

    rsi = talib.RSI(bars.close, 14)
    assert entries.tolist() == (np.nan_to_num(rsi, nan=50.0) < 25).tolist()
    assert exits.tolist() == (np.nan_to_num(rsi, nan=50.0) > 75).tolist()
    assert entries.sum() > 0
    assert exits.sum() > 0


def test_the_catalogue_lists_each_parameter_with_type_default_and_bounds():
    payload = {item["name"]: item for item in catalogue_payload()}

    assert payload["rsi_reversion"]["params"][1] == {
        "name": "lower",
        "type": "float",
        "default": 30.0,
        "min": 0,
        "max": 100,
        "description": "Enter below this RSI",
    }
    assert payload["buy_and_hold"]["params"] == []


def test_each_strategy_needs_its_warm_up_plus_a_signal_bar_and_a_fill_bar():
    assert get_strategy("sma_cross").min_bars({"fast": 10, "slow": 30}) == 31
    assert get_strategy("rsi_reversion").min_bars({"period": 14, "lower": 30, "upper": 70}) == 16
    assert get_strategy("buy_and_hold").min_bars({}) == 2

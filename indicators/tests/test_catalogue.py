"""The catalogue: parameters with defaults and bounds, errors that name the parameter, warm-up."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from indicators.catalogue import CATALOGUE, IndicatorSpec, ParamError, catalogue_payload
from indicators.compute import compute


def test_the_catalogue_lists_the_13_indicators():
    assert set(CATALOGUE) == {
        "sma", "ema", "wma", "rsi", "macd", "bbands", "atr", "stoch", "obv", "vwap", "adx", "cci", "mfi"
    }  # fmt: skip


def test_the_catalogue_payload_is_self_describing_json():
    payload = json.loads(json.dumps(catalogue_payload()))
    rsi = next(item for item in payload if item["name"] == "rsi")
    assert rsi["placement"] == "pane"
    assert rsi["range"] == [0, 100]
    assert rsi["outputs"] == [{"name": "rsi", "title": "RSI"}]
    assert rsi["params"][0] == {
        "name": "length", "type": "int", "default": 14, "min": 2, "max": 100000,
        "description": "Number of bars in the window",
    }  # fmt: skip
    assert rsi["warmup"] == 14
    assert rsi["history"] > rsi["warmup"]
    assert {item["name"] for item in payload if item["placement"] == "overlay"} == {
        "sma",
        "ema",
        "wma",
        "bbands",
        "vwap",
    }


@pytest.mark.parametrize(
    ("name", "raw", "param", "fragment"),
    [
        ("rsi", {"length": "abc"}, "length", "integer"),
        ("rsi", {"length": "1"}, "length", "between 2 and 100000"),
        ("rsi", {"lenght": "10"}, "lenght", "no parameter"),
        ("bbands", {"std_up": "nan"}, "std_up", "finite"),
        ("bbands", {"mamode": "hull"}, "mamode", "one of"),
        ("macd", {"fast": "30"}, "fast", "less than slow"),
        ("nope", {}, "name", "unknown indicator"),
    ],
)
def test_a_bad_parameter_is_named_in_the_error(name, raw, param, fragment):
    with pytest.raises(ParamError) as error:
        IndicatorSpec.build(name, raw)
    assert error.value.param == param
    assert fragment in error.value.message


def test_parameters_arrive_as_text_and_are_parsed_to_their_types():
    spec = IndicatorSpec.build("bbands", {"length": "10", "std_up": "2.5", "mamode": "EMA"})
    assert spec.values == {"length": 10, "std_up": 2.5, "std_down": 2.0, "mamode": "ema", "source": "close"}
    assert spec.canonical == "bbands(length=10,std_up=2.5,std_down=2.0,mamode=ema,source=close)"


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_the_declared_warm_up_is_the_first_bar_with_a_value(name, btc_1m):
    # The warm-up is that of the first output; ADX's +DI/-DI start earlier (bar `length`), as in TA-Lib.
    spec = IndicatorSpec.build(name)
    for index, (output, values) in enumerate(compute(spec, btc_1m).items()):
        first = int(np.argmax(~np.isnan(values)))
        if index == 0:
            assert first == spec.lookback, f"{name}.{output} starts at {first}, catalogue says {spec.lookback}"
        else:
            assert first <= spec.lookback


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_values_computed_from_the_declared_history_equal_values_from_all_history(name, btc_1m):
    # The API computes from `history_bars` before the first bar asked for; the seed of a recursive
    # indicator must have faded by then. OBV is the exception: it gets its offset from the database.
    spec = IndicatorSpec.build(name, {"anchor": "day"} if name == "vwap" else {})
    target = len(btc_1m) - 1
    start = target - spec.history_bars(60)
    full = compute(spec, btc_1m)
    window = compute(spec, btc_1m.slice(start))
    for output in full:
        if name == "obv":
            continue
        assert window[output][-1] == pytest.approx(full[output][-1], rel=1e-9), output


def test_every_indicator_and_parameter_is_documented():
    text = (Path(__file__).resolve().parents[2] / "docs" / "indicators.md").read_text()
    for name, definition in CATALOGUE.items():
        assert f"## `{name}`: {definition.title}" in text
        for param in definition.params:
            assert f"| `{param.name}` | {param.kind} | `{param.default}` |" in text, f"{name}.{param.name}"

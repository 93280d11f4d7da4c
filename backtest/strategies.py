"""The strategies a backtest can run: parameters with types, defaults and bounds, and their signals.

Pure: no Django imports. Indicators come from the indicator app's own code (`indicators.compute`,
TA-Lib underneath), so a backtest sees exactly the values the charts and alerts show.

A strategy turns bars into two boolean arrays, entries and exits, each decided on a bar's close
from that bar and earlier ones only; the engine fills them at the next bar's open.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from backtest.engine import BoolArray
from indicators.catalogue import IndicatorSpec, ParamDef, ParamError
from indicators.compute import compute
from indicators.series import Bars, FloatArray

Signals = tuple[BoolArray, BoolArray]
MAX_LENGTH = 10_000


def _indicator(bars: Bars, name: str, output: str, **params: Any) -> FloatArray:
    return compute(IndicatorSpec.build(name, params), bars)[output]


@dataclass(frozen=True, slots=True)
class Strategy:
    name: str
    title: str
    description: str
    params: tuple[ParamDef, ...]
    signals: Callable[[Bars, dict[str, Any]], Signals]
    warmup: Callable[[dict[str, Any]], int]  # bars before the first possible signal
    check: Callable[[dict[str, Any]], None] = lambda values: None  # raises ParamError across parameters

    def resolve(self, raw: Mapping[str, object] | None) -> dict[str, Any]:
        """Defaults overlaid with `raw`, each value parsed and checked; ParamError names a bad one."""
        raw = raw or {}
        known = {param.name: param for param in self.params}
        for name in raw:
            if name not in known:
                hint = ", ".join(known) or "none"
                raise ParamError(name, f"{self.name} has no parameter {name!r} (parameters: {hint})")
        values = {name: param.parse(raw[name]) if name in raw else param.default for name, param in known.items()}
        self.check(values)
        return values

    def min_bars(self, values: dict[str, Any]) -> int:
        """Bars needed for one signal after the warm-up and a next bar to fill it."""
        return self.warmup(values) + 2

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "params": [param.as_json() for param in self.params],
        }


def _length(name: str, default: int, description: str, minimum: int = 2) -> ParamDef:
    return ParamDef(name, "int", default, description, minimum, MAX_LENGTH)


def _fast_below_slow(values: dict[str, Any]) -> None:
    if values["fast"] >= values["slow"]:
        raise ParamError("fast", f"must be less than slow ({values['fast']} >= {values['slow']})")


def _lower_below_upper(values: dict[str, Any]) -> None:
    if values["lower"] >= values["upper"]:
        raise ParamError("lower", f"must be less than upper ({values['lower']} >= {values['upper']})")


def _ma_cross(kind: str) -> Callable[[Bars, dict[str, Any]], Signals]:
    def signals(bars: Bars, p: dict[str, Any]) -> Signals:
        fast = _indicator(bars, kind, kind, length=p["fast"])
        slow = _indicator(bars, kind, kind, length=p["slow"])
        # Long exactly while fast > slow (NaN during warm-up compares False both ways: flat).
        with np.errstate(invalid="ignore"):
            return fast > slow, fast <= slow

    return signals


def _rsi_reversion(bars: Bars, p: dict[str, Any]) -> Signals:
    rsi = _indicator(bars, "rsi", "rsi", length=p["period"])
    with np.errstate(invalid="ignore"):
        return rsi < p["lower"], rsi > p["upper"]


def _bollinger_reversion(bars: Bars, p: dict[str, Any]) -> Signals:
    bands = compute(
        IndicatorSpec.build("bbands", {"length": p["length"], "std_up": p["std"], "std_down": p["std"]}), bars
    )
    with np.errstate(invalid="ignore"):
        return bars.close < bands["lower"], bars.close > bands["middle"]


def _buy_and_hold(bars: Bars, p: dict[str, Any]) -> Signals:
    entries = np.zeros(len(bars), dtype=bool)
    entries[:1] = True
    return entries, np.zeros(len(bars), dtype=bool)


def _ma_strategy(kind: str, title: str) -> Strategy:
    return Strategy(
        f"{kind}_cross",
        f"{title} crossover",
        f"Long while the fast {kind.upper()} of the close is above the slow one, flat otherwise.",
        (
            _length("fast", 10, f"Bars of the fast {kind.upper()}"),
            _length("slow", 30, f"Bars of the slow {kind.upper()}"),
        ),
        _ma_cross(kind),
        warmup=lambda p: int(p["slow"]) - 1,
        check=_fast_below_slow,
    )


STRATEGIES: dict[str, Strategy] = {
    strategy.name: strategy
    for strategy in (
        _ma_strategy("sma", "Simple moving average"),
        _ma_strategy("ema", "Exponential moving average"),
        Strategy(
            "rsi_reversion",
            "RSI mean reversion",
            "Enter when RSI closes below `lower` (oversold), exit when it closes above `upper` (overbought).",
            (
                _length("period", 14, "Bars of the RSI (Wilder smoothing)"),
                ParamDef("lower", "float", 30.0, "Enter below this RSI", 0, 100),
                ParamDef("upper", "float", 70.0, "Exit above this RSI", 0, 100),
            ),
            _rsi_reversion,
            warmup=lambda p: int(p["period"]),
            check=_lower_below_upper,
        ),
        Strategy(
            "bollinger_reversion",
            "Bollinger band mean reversion",
            "Enter when the close is below the lower band, exit when it is above the middle band (the SMA).",
            (
                _length("length", 20, "Bars of the bands' SMA and standard deviation"),
                ParamDef("std", "float", 2.0, "Standard deviations from the middle band to the lower", 0.1, 10),
            ),
            _bollinger_reversion,
            warmup=lambda p: int(p["length"]) - 1,
        ),
        Strategy(
            "buy_and_hold",
            "Buy and hold",
            "Enter on the first bar's close (filled at the second bar's open) and hold to the end.",
            (),
            _buy_and_hold,
            warmup=lambda p: 0,
        ),
    )
}


def get_strategy(name: str) -> Strategy:
    """The strategy called `name`, or ParamError naming `strategy`."""
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ParamError("strategy", f"unknown strategy {name!r}; use one of {', '.join(STRATEGIES)}") from None


def catalogue_payload() -> list[dict[str, Any]]:
    return [strategy.as_json() for strategy in STRATEGIES.values()]

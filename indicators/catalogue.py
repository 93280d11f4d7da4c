"""The indicators the product offers: names, parameters with defaults and bounds, outputs, warm-up.

Pure: no Django imports. One `IndicatorDef` per indicator; the API serves `catalogue_payload()`
as-is, so the chart can build its panes from it (overlay or pane, outputs, defaults, y range).

Warm-up has two parts, both in bars:
- `lookback`: TA-Lib's lookback, the index of the first value. Earlier bars have no value (null):
  a value is never shown from fewer bars than the indicator needs.
- `memory`: for recursive indicators (EMA, Wilder smoothing), how many more bars before a value
  make its seed's influence negligible (below `SEED_TOLERANCE`, relative). Series are computed
  from `lookback + memory` bars before the first bar asked for, so a value does not depend on
  where the request started (to that tolerance). Anchored VWAP needs its whole anchor period.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from talib import abstract

# A recursive value seeded SEED_MEMORY bars earlier differs from the one seeded at the start of
# history by less than this, relative (the seed's weight decays as (1 - alpha) ** bars).
SEED_TOLERANCE = 1e-11

SOURCES = ("close", "open", "high", "low", "hl2", "hlc3", "ohlc4")
# TA-Lib MA_Type codes for the moving averages a user may pick where TA-Lib accepts one.
MA_TYPES: dict[str, Any] = {"sma": 0, "ema": 1, "wma": 2, "dema": 3, "tema": 4, "trima": 5, "kama": 6, "t3": 8}
VWAP_ANCHORS = ("auto", "day", "session", "week")
MAX_PERIOD = 100_000  # TA-Lib's own upper bound for every period


class ParamError(ValueError):
    """A parameter value is not acceptable; `param` names it (e.g. "length")."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param
        self.message = message


@dataclass(frozen=True, slots=True)
class ParamDef:
    name: str
    kind: Literal["int", "float", "choice"]
    default: int | float | str
    description: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()

    def parse(self, raw: object) -> int | float | str:
        """The value of `raw` (a query-string text or a number), or ParamError naming this parameter."""
        if self.kind == "choice":
            value = str(raw).strip().lower()
            if value not in self.choices:
                raise ParamError(self.name, f"must be one of {', '.join(self.choices)} (got {raw!r})")
            return value
        number: int | float
        try:
            if self.kind == "int":
                if isinstance(raw, float) and not raw.is_integer():
                    raise ValueError
                number = int(str(raw).strip()) if not isinstance(raw, int | float) else int(raw)
            else:
                number = float(str(raw).strip()) if not isinstance(raw, int | float) else float(raw)
        except ValueError:
            kind = "an integer" if self.kind == "int" else "a number"
            raise ParamError(self.name, f"must be {kind} (got {raw!r})") from None
        if isinstance(raw, bool) or not math.isfinite(number):
            raise ParamError(self.name, f"must be a finite number (got {raw!r})")
        if (self.minimum is not None and number < self.minimum) or (self.maximum is not None and number > self.maximum):
            raise ParamError(self.name, f"must be between {_num(self.minimum)} and {_num(self.maximum)} (got {raw})")
        return number

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "type": self.kind, "default": self.default}
        if self.kind == "choice":
            data["choices"] = list(self.choices)
        else:
            data["min"], data["max"] = self.minimum, self.maximum
        data["description"] = self.description
        return data


def _num(value: float | None) -> str:
    return "-inf" if value is None else f"{value:g}"


@dataclass(frozen=True, slots=True)
class OutputDef:
    name: str
    title: str


Params = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class IndicatorDef:
    name: str
    title: str
    description: str
    inputs: tuple[str, ...]
    params: tuple[ParamDef, ...]
    outputs: tuple[OutputDef, ...]
    placement: Literal["overlay", "pane"]
    lookback: Callable[[Params], int]
    memory: Callable[[Params], int] = lambda params: 0
    value_range: tuple[float, float] | None = None  # fixed y range of a pane (0-100 oscillators)
    levels: tuple[float, ...] = ()  # reference lines a pane usually draws (30/70 for RSI)
    convention: str = ""
    anchored: bool = False  # needs every bar since its anchor (VWAP)

    def defaults(self) -> dict[str, Any]:
        return {param.name: param.default for param in self.params}

    def resolve(self, raw: Mapping[str, object]) -> dict[str, Any]:
        """Defaults overlaid with `raw`, each value parsed and checked; ParamError names a bad one."""
        known = {param.name: param for param in self.params}
        for name in raw:
            if name not in known:
                hint = ", ".join(known) or "none"
                raise ParamError(name, f"{self.name} has no parameter {name!r} (parameters: {hint})")
        values = {name: param.parse(raw[name]) if name in raw else param.default for name, param in known.items()}
        if self.name == "macd" and float(values["fast"]) >= float(values["slow"]):
            raise ParamError("fast", f"must be less than slow ({values['fast']} >= {values['slow']})")
        return values

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "placement": self.placement,
            "inputs": list(self.inputs),
            "params": [param.as_json() for param in self.params],
            "outputs": [{"name": out.name, "title": out.title} for out in self.outputs],
            "warmup": self.lookback(self.defaults()),
            "history": self.lookback(self.defaults()) + self.memory(self.defaults()),
            "range": list(self.value_range) if self.value_range else None,
            "levels": list(self.levels),
            "convention": self.convention,
        }


# --- warm-up helpers ------------------------------------------------------------------------------


@lru_cache(maxsize=1024)
def talib_lookback(function: str, **params: Any) -> int:
    """TA-Lib's own lookback for a function and parameters (the index of its first value)."""
    fn = abstract.Function(function)  # type: ignore[attr-defined]
    fn.set_parameters(**params)
    return int(fn.lookback)


def decay_bars(alpha: float) -> int:
    """Bars after which a seed's weight (1 - alpha) ** bars falls below SEED_TOLERANCE."""
    if alpha >= 1:
        return 0
    return math.ceil(math.log(SEED_TOLERANCE) / math.log(1.0 - alpha))


def ema_memory(length: int) -> int:
    return decay_bars(2.0 / (length + 1))


def wilder_memory(length: int) -> int:
    return decay_bars(1.0 / length)


def ma_memory(matype: str, length: int) -> int:
    """Memory of the moving averages TA-Lib offers as MA types: cascades of EMAs need more."""
    cascades = {"sma": 0, "wma": 0, "trima": 0, "ema": 1, "dema": 2, "tema": 3, "t3": 6}
    if matype == "kama":
        return ema_memory(30)  # KAMA's slowest smoothing constant is that of a 30-bar EMA
    return cascades[matype] * ema_memory(length)


# --- parameters shared by several indicators ------------------------------------------------------


def _length(default: int, minimum: int = 2, what: str = "Number of bars in the window") -> ParamDef:
    return ParamDef("length", "int", default, what, minimum, MAX_PERIOD)


SOURCE = ParamDef("source", "choice", "close", "Price the indicator is computed on", choices=SOURCES)


def _matype(name: str, description: str) -> ParamDef:
    return ParamDef(name, "choice", "sma", description, choices=tuple(MA_TYPES))


WILDER = "Wilder smoothing: first value the simple mean of the first `length` values, then x' = x + (v - x) / length."

CATALOGUE: dict[str, IndicatorDef] = {
    definition.name: definition
    for definition in (
        IndicatorDef(
            "sma",
            "Simple moving average",
            "Mean of the last `length` values.",
            ("close",),
            (_length(20), SOURCE),
            (OutputDef("sma", "SMA"),),
            "overlay",
            lookback=lambda p: p["length"] - 1,
        ),
        IndicatorDef(
            "ema",
            "Exponential moving average",
            "Exponentially weighted mean with alpha = 2 / (length + 1).",
            ("close",),
            (_length(20), SOURCE),
            (OutputDef("ema", "EMA"),),
            "overlay",
            lookback=lambda p: p["length"] - 1,
            memory=lambda p: ema_memory(p["length"]),
            convention="Seeded with the simple mean of the first `length` values (TA-Lib).",
        ),
        IndicatorDef(
            "wma",
            "Weighted moving average",
            "Linearly weighted mean of the last `length` values, the newest weighing `length`.",
            ("close",),
            (_length(20), SOURCE),
            (OutputDef("wma", "WMA"),),
            "overlay",
            lookback=lambda p: p["length"] - 1,
        ),
        IndicatorDef(
            "rsi",
            "Relative strength index",
            "100 * average gain / (average gain + average loss) over `length` bars.",
            ("close",),
            (_length(14), SOURCE),
            (OutputDef("rsi", "RSI"),),
            "pane",
            lookback=lambda p: p["length"],
            memory=lambda p: wilder_memory(p["length"]),
            value_range=(0, 100),
            levels=(30, 70),
            convention=WILDER,
        ),
        IndicatorDef(
            "macd",
            "Moving average convergence/divergence",
            "EMA(fast) - EMA(slow), its EMA(signal), and their difference.",
            ("close",),
            (
                ParamDef("fast", "int", 12, "Bars of the fast EMA", 2, MAX_PERIOD),
                ParamDef("slow", "int", 26, "Bars of the slow EMA", 2, MAX_PERIOD),
                ParamDef("signal", "int", 9, "Bars of the signal line's EMA", 1, MAX_PERIOD),
                SOURCE,
            ),
            (OutputDef("macd", "MACD"), OutputDef("signal", "Signal"), OutputDef("hist", "Histogram")),
            "pane",
            lookback=lambda p: talib_lookback(
                "MACD", fastperiod=p["fast"], slowperiod=p["slow"], signalperiod=p["signal"]
            ),
            memory=lambda p: ema_memory(p["slow"]) + ema_memory(p["signal"]),
            levels=(0,),
            convention=(
                "TA-Lib: both EMAs start at bar slow-1, each seeded with the simple mean of its own last "
                "`length` values there; the signal EMA is seeded with the mean of the first `signal` MACD values."
            ),
        ),
        IndicatorDef(
            "bbands",
            "Bollinger bands",
            "Moving average of `length` bars plus and minus a multiple of the population standard deviation.",
            ("close",),
            (
                _length(20),
                ParamDef("std_up", "float", 2.0, "Standard deviations above the middle band", 0, 100),
                ParamDef("std_down", "float", 2.0, "Standard deviations below the middle band", 0, 100),
                _matype("mamode", "Moving average of the middle band"),
                SOURCE,
            ),
            (
                OutputDef("upper", "Upper band"),
                OutputDef("middle", "Middle band"),
                OutputDef("lower", "Lower band"),
                OutputDef("bandwidth", "Bandwidth %"),
                OutputDef("percent_b", "%B"),
            ),
            "overlay",
            lookback=lambda p: talib_lookback("BBANDS", timeperiod=p["length"], matype=MA_TYPES[p["mamode"]]),
            memory=lambda p: ma_memory(p["mamode"], p["length"]),
            convention=(
                "Population standard deviation (divide by n), as TA-Lib and TradingView. "
                "bandwidth = 100 * (upper - lower) / middle; percent_b = (source - lower) / (upper - lower)."
            ),
        ),
        IndicatorDef(
            "atr",
            "Average true range",
            "Wilder-smoothed true range, max(high - low, |high - prev close|, |low - prev close|).",
            ("high", "low", "close"),
            (_length(14, minimum=1),),
            (OutputDef("atr", "ATR"),),
            "pane",
            lookback=lambda p: p["length"],
            memory=lambda p: wilder_memory(p["length"]),
            convention=WILDER + " The first true range (bar 0) has no previous close and is not used.",
        ),
        IndicatorDef(
            "stoch",
            "Stochastic oscillator",
            "%K: where the close sits in the high-low range of `k` bars, smoothed over `smooth_k`; %D: its average.",
            ("high", "low", "close"),
            (
                ParamDef("k", "int", 14, "Bars of the high-low range (fast %K)", 1, MAX_PERIOD),
                ParamDef("smooth_k", "int", 3, "Bars smoothing fast %K into %K", 1, MAX_PERIOD),
                ParamDef("d", "int", 3, "Bars averaging %K into %D", 1, MAX_PERIOD),
                _matype("k_mamode", "Moving average smoothing %K"),
                _matype("d_mamode", "Moving average of %D"),
            ),
            (OutputDef("k", "%K"), OutputDef("d", "%D")),
            "pane",
            lookback=lambda p: talib_lookback(
                "STOCH",
                fastk_period=p["k"],
                slowk_period=p["smooth_k"],
                slowk_matype=MA_TYPES[p["k_mamode"]],
                slowd_period=p["d"],
                slowd_matype=MA_TYPES[p["d_mamode"]],
            ),
            memory=lambda p: ma_memory(p["k_mamode"], p["smooth_k"]) + ma_memory(p["d_mamode"], p["d"]),
            value_range=(0, 100),
            levels=(20, 80),
            convention="Slow stochastic as TA-Lib STOCH: fast %K 0 when the range is empty.",
        ),
        IndicatorDef(
            "obv",
            "On-balance volume",
            "Running total of volume, added on an up close and subtracted on a down close.",
            ("close", "volume"),
            (SOURCE,),
            (OutputDef("obv", "OBV"),),
            "pane",
            lookback=lambda p: 0,
            convention=(
                "Seeded with the first bar's volume (TA-Lib). Accumulates from the first stored bar of the "
                "series, whatever range is asked for."
            ),
        ),
        IndicatorDef(
            "vwap",
            "Volume-weighted average price",
            "Sum of typical price * volume over the sum of volume since the anchor (start of day or session).",
            ("high", "low", "close", "volume"),
            (
                ParamDef(
                    "anchor",
                    "choice",
                    "auto",
                    "When the sums restart: day = UTC day, session = exchange session (at its pre-market; the UTC "
                    "day without sessions), week = UTC week (Monday); auto = session for stocks and indices, day "
                    "otherwise",
                    choices=VWAP_ANCHORS,
                ),
            ),
            (OutputDef("vwap", "VWAP"),),
            "overlay",
            lookback=lambda p: 0,
            anchored=True,
            convention=(
                "Typical price (high + low + close) / 3, as TA-Lib VWAP; null while the period has no volume. A "
                "stock's sessions come from its exchange calendar (SESSION_CALENDAR): a session begins with its "
                "pre-market, 5h30 before the open, and lasts until the next one begins, so holidays and weekends "
                "never restart it."
            ),
        ),
        IndicatorDef(
            "adx",
            "Average directional index",
            "Wilder's ADX with the directional indicators +DI and -DI.",
            ("high", "low", "close"),
            (_length(14),),
            (OutputDef("adx", "ADX"), OutputDef("plus_di", "+DI"), OutputDef("minus_di", "-DI")),
            "pane",
            lookback=lambda p: 2 * p["length"] - 1,
            memory=lambda p: 2 * wilder_memory(p["length"]),
            value_range=(0, 100),
            levels=(20, 25),
            convention=WILDER + " +DI/-DI start at bar `length`, ADX at bar 2 * length - 1 (TA-Lib).",
        ),
        IndicatorDef(
            "cci",
            "Commodity channel index",
            "(typical price - its SMA) / (c * mean absolute deviation), over `length` bars.",
            ("high", "low", "close"),
            (_length(20), ParamDef("c", "float", 0.015, "Lambert's constant", 1e-6, 1.0)),
            (OutputDef("cci", "CCI"),),
            "pane",
            lookback=lambda p: p["length"] - 1,
            levels=(-100, 100),
            convention="Typical price (high + low + close) / 3; mean absolute deviation around the window's mean.",
        ),
        IndicatorDef(
            "mfi",
            "Money flow index",
            "100 * positive money flow / total money flow over `length` bars (typical price * volume).",
            ("high", "low", "close", "volume"),
            (_length(14),),
            (OutputDef("mfi", "MFI"),),
            "pane",
            lookback=lambda p: p["length"],
            value_range=(0, 100),
            levels=(20, 80),
            convention="A bar whose typical price is unchanged adds to neither flow (TA-Lib).",
        ),
    )
}


@dataclass(frozen=True, slots=True)
class IndicatorSpec:
    """One indicator with all its parameters resolved; `key` names it in requests and responses."""

    name: str
    params: tuple[tuple[str, Any], ...]
    key: str = field(default="", compare=False)

    @classmethod
    def build(cls, name: str, raw: Mapping[str, object] | None = None, key: str = "") -> IndicatorSpec:
        definition = CATALOGUE.get(name)
        if definition is None:
            raise ParamError("name", f"unknown indicator {name!r}; use one of {', '.join(CATALOGUE)}")
        values = definition.resolve(raw or {})
        return cls(name, tuple(values.items()), key or name)

    @property
    def definition(self) -> IndicatorDef:
        return CATALOGUE[self.name]

    @property
    def values(self) -> dict[str, Any]:
        return dict(self.params)

    @property
    def lookback(self) -> int:
        return self.definition.lookback(self.values)

    @property
    def memory(self) -> int:
        return self.definition.memory(self.values)

    @property
    def canonical(self) -> str:
        """A stable text of the computation, e.g. `rsi(length=14,source=close)`: cache keys use it."""
        inner = ",".join(f"{name}={value}" for name, value in self.params)
        return f"{self.name}({inner})"

    def history_bars(self, bar_seconds: int) -> int:
        """Bars needed before a value so that it is right: lookback + memory, or the anchor period."""
        bars = self.lookback + self.memory
        if self.definition.anchored:
            anchor = self.values.get("anchor", "day")
            # A session runs from one pre-market to the next (up to days over a holiday weekend), but its
            # bars span its extended hours only (16 hours): a day's worth of bars always covers them.
            period = 7 * 86_400 if anchor == "week" else 86_400
            bars = max(bars, -(-period // bar_seconds))
        return bars


def default_specs() -> list[IndicatorSpec]:
    """Every indicator with its default parameters: what the live path publishes."""
    return [IndicatorSpec.build(name) for name in CATALOGUE]


def catalogue_payload() -> list[dict[str, Any]]:
    return [definition.as_json() for definition in CATALOGUE.values()]

"""The vocabulary of alert rules: conditions, operands, firing options, validation. Pure: no Django.

A rule compares a *source* series (the close, or any output of an indicator from the `indicators`
catalogue, such as RSI 14 or MACD's signal line) with either a constant
*level* or a *target* series (EMA 50, the MACD signal line), TradingView style. A few conditions
carry their own parameters (percent and bars for moves, the channel's bounds, the volume spike's
multiplier and window). Event conditions (data quality, collector down) are not evaluated over
bars by the engine; `alerts.events` detects them.

Validation returns field -> message so that the model, the API and the admin all report the same
errors on the same fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from indicators.catalogue import CATALOGUE, IndicatorSpec, ParamError


class Condition(StrEnum):
    CROSSING = "crossing"
    CROSSING_UP = "crossing_up"
    CROSSING_DOWN = "crossing_down"
    GREATER_THAN = "greater_than"
    LESS_THAN = "less_than"
    ENTERING_CHANNEL = "entering_channel"
    EXITING_CHANNEL = "exiting_channel"
    MOVING_UP_PERCENT = "moving_up_percent"
    MOVING_DOWN_PERCENT = "moving_down_percent"
    VOLUME_SPIKE = "volume_spike"
    DATA_QUALITY = "data_quality"
    COLLECTOR_DOWN = "collector_down"


class Frequency(StrEnum):
    #: Fire the first time the condition holds (intrabar for price rules), then deactivate the rule.
    ONCE = "once"
    #: At most once per bar, as soon as the condition holds (intrabar for price rules).
    ONCE_PER_BAR = "once_per_bar"
    #: At most once per bar, judged on the final bar only.
    ONCE_PER_BAR_CLOSE = "once_per_bar_close"


COMPARISONS = frozenset(
    {Condition.CROSSING, Condition.CROSSING_UP, Condition.CROSSING_DOWN, Condition.GREATER_THAN, Condition.LESS_THAN}
)
CHANNELS = frozenset({Condition.ENTERING_CHANNEL, Condition.EXITING_CHANNEL})
MOVES = frozenset({Condition.MOVING_UP_PERCENT, Condition.MOVING_DOWN_PERCENT})
EVENTS = frozenset({Condition.DATA_QUALITY, Condition.COLLECTOR_DOWN})

PRICE_FIELDS = ("open", "high", "low", "close", "volume")
QUOTES = ("open", "high", "low", "close")
# What the data-quality checker reports (`market.quality`; the same values as market.models.FindingKind).
QUALITY_FINDING_KINDS = (
    "gap",
    "duplicate",
    "ohlc",
    "non_positive_price",
    "negative_volume",
    "return_outlier",
    "volume_outlier",
    "stale",
    "source_disagreement",
)
# Indicators of the `indicators` catalogue that an alert cannot use, and why.
UNSUPPORTED = {"obv": "OBV sums volume from wherever its history starts, so its level means nothing on its own"}
# An operand may need at most this many bars of history (warm-up included) per evaluation.
MAX_HISTORY_BARS = 5000
MAX_MOVE_BARS = 500
MAX_AVERAGE_BARS = 500


@dataclass(frozen=True, slots=True)
class Operand:
    """A series of one feed: a price field, or one output of an indicator from the `indicators`
    catalogue with all its parameters resolved (e.g. EMA length 20 of the close, MACD's signal line)."""

    indicator: str = "close"
    output: str = ""
    params: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Operand:
        """From the stored/API shape {"indicator": "ema", "length": 20} or {"indicator": "macd",
        "output": "signal"} (defaults fill the rest); raises ValueError naming what is wrong."""
        if not isinstance(raw, Mapping):
            raise ValueError('must be an object like {"indicator": "ema", "length": 20}')
        name = raw.get("indicator", "close")
        if name in PRICE_FIELDS:
            if set(raw) - {"indicator"}:
                raise ValueError(f"{name} takes no parameters")
            return cls(name)
        if name in UNSUPPORTED:
            raise ValueError(f"{name} cannot be used in alerts: {UNSUPPORTED[name]}")
        definition = CATALOGUE.get(name) if isinstance(name, str) else None
        if definition is None:
            usable = [*PRICE_FIELDS, *(n for n in CATALOGUE if n not in UNSUPPORTED)]
            raise ValueError(f"unknown indicator {name!r}; use one of {', '.join(usable)}")
        outputs = [out.name for out in definition.outputs]
        output = raw.get("output", outputs[0])
        if output not in outputs:
            raise ValueError(f"{name} has no output {output!r}; its outputs are {', '.join(outputs)}")
        try:
            spec = IndicatorSpec.build(name, {k: v for k, v in raw.items() if k not in ("indicator", "output")})
        except ParamError as exc:
            raise ValueError(f"{name} {exc}") from None
        if spec.lookback + spec.memory > MAX_HISTORY_BARS:
            raise ValueError(f"{name} with these parameters needs more than {MAX_HISTORY_BARS} bars of history")
        return cls(name, output, spec.params)

    def as_dict(self) -> dict[str, Any]:
        if self.is_price:
            return {"indicator": self.indicator}
        return {"indicator": self.indicator, "output": self.output, **dict(self.params)}

    @property
    def is_price(self) -> bool:
        return self.indicator in PRICE_FIELDS

    def indicator_spec(self) -> IndicatorSpec:
        return IndicatorSpec(self.indicator, self.params, self.indicator)

    def label(self) -> str:
        """'close', 'RSI(14)', 'MACD(12, 26, 9).signal', 'EMA(20, hl2)'."""
        if self.is_price:
            return self.indicator
        shown = [str(value) for name, value in self.params if not (name == "source" and value == "close")]
        text = f"{self.indicator.upper()}({', '.join(shown)})"
        first_output = CATALOGUE[self.indicator].outputs[0].name
        return text if self.output == first_output else f"{text}.{self.output}"


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """One rule as the engine sees it. Times are UTC epoch seconds (floats), never datetimes."""

    id: int
    instrument_id: int
    timeframe: str
    condition: Condition
    source: Operand = Operand()
    target: Operand | None = None
    level: float | None = None
    upper: float | None = None
    percent: float | None = None
    bars: int | None = None
    multiplier: float | None = None
    finding_kinds: tuple[str, ...] = ()
    frequency: Frequency = Frequency.ONCE_PER_BAR_CLOSE
    cooldown_seconds: float = 0.0
    expires_at: float | None = None
    active: bool = True

    @property
    def feed(self) -> tuple[int, str]:
        return (self.instrument_id, self.timeframe)


def rule_errors(
    condition: str,
    *,
    source: Any = None,
    target: Any = None,
    level: float | None = None,
    upper: float | None = None,
    percent: float | None = None,
    bars: int | None = None,
    multiplier: float | None = None,
    finding_kinds: Any = None,
) -> dict[str, str]:
    """Field -> message for every problem with a rule's condition and parameters (empty: valid)."""
    if condition not in Condition.__members__.values():
        return {"condition": f"unknown condition {condition!r}; use one of {', '.join(Condition)}"}
    errors: dict[str, str] = {}
    parsed_source = _parse_operand(source, "source", errors)
    if target is not None:
        _parse_operand(target, "target", errors)
    cond = Condition(condition)

    def forbid(**values: Any) -> None:
        for name, value in values.items():
            if value is not None:
                errors[name] = f"not used by {cond}"

    if cond in COMPARISONS:
        if level is None and target is None:
            errors["level"] = "give a level or a target indicator to compare with"
        elif level is not None and target is not None:
            errors["level"] = "give either a level or a target indicator, not both"
        if level is not None and parsed_source is not None and parsed_source.indicator in QUOTES and level <= 0:
            # Quotes here are positive: such a rule could never fire (a line dragged off the chart).
            errors["level"] = f"a level on the {parsed_source.indicator} price must be above 0"
        forbid(upper=upper, percent=percent, bars=bars, multiplier=multiplier)
    elif cond in CHANNELS:
        if level is None or upper is None:
            errors["upper" if level is not None else "level"] = "a channel needs level (lower) and upper"
        elif level >= upper:
            errors["upper"] = "upper must be above level"
        forbid(target=target, percent=percent, bars=bars, multiplier=multiplier)
    elif cond in MOVES:
        if percent is None or not 0 < percent < (100 if cond is Condition.MOVING_DOWN_PERCENT else 1e6):
            errors["percent"] = "a move needs a percent above 0 (and below 100 for a move down)"
        if bars is None or not 1 <= bars <= MAX_MOVE_BARS:
            errors["bars"] = f"a move needs bars from 1 to {MAX_MOVE_BARS}"
        forbid(target=target, level=level, upper=upper, multiplier=multiplier)
    elif cond is Condition.VOLUME_SPIKE:
        if multiplier is None or multiplier <= 0:
            errors["multiplier"] = "a volume spike needs a multiplier above 0 (e.g. 3 for 3x the average)"
        if bars is None or not 1 <= bars <= MAX_AVERAGE_BARS:
            errors["bars"] = f"a volume spike needs the average's window in bars, from 1 to {MAX_AVERAGE_BARS}"
        if parsed_source is not None and parsed_source != Operand():
            errors["source"] = "a volume spike always watches the volume; leave source out"
        forbid(target=target, level=level, upper=upper, percent=percent)
    elif cond is Condition.COLLECTOR_DOWN:
        if bars is None or not 1 <= bars <= 10_000:
            errors["bars"] = "collector down needs how many bar periods of silence count as down (1 to 10000)"
        forbid(target=target, level=level, upper=upper, multiplier=multiplier)
    else:  # data quality
        if percent is not None and percent <= 0:
            errors["percent"] = "the price jump that counts as suspect must be above 0 percent"
        if level is not None and not 0 < level <= 100:
            errors["level"] = "the quality score to stay above must be from 1 to 100"
        if (problem := _finding_kinds_error(finding_kinds)) is not None:
            errors["finding_kinds"] = problem
        forbid(target=target, upper=upper, multiplier=multiplier, bars=bars)
    if cond is not Condition.DATA_QUALITY and finding_kinds:
        errors["finding_kinds"] = f"not used by {cond}"
    return errors


def _finding_kinds_error(kinds: Any) -> str | None:
    if kinds is None:
        return None
    if not isinstance(kinds, list | tuple) or not all(isinstance(kind, str) for kind in kinds):
        return 'must be a list like ["gap", "stale"]'
    unknown = sorted(set(kinds) - set(QUALITY_FINDING_KINDS))
    if unknown:
        return f"unknown finding kind {', '.join(unknown)}; use {', '.join(QUALITY_FINDING_KINDS)}"
    return None


def _parse_operand(raw: Any, field: str, errors: dict[str, str]) -> Operand | None:
    if raw is None:
        return Operand()
    try:
        return Operand.parse(raw)
    except ValueError as exc:
        errors[field] = str(exc)
        return None


def is_intrabar(spec: RuleSpec) -> bool:
    """Whether the rule is judged on partial bars too: price rules not set to fire on bar close."""
    if spec.frequency is Frequency.ONCE_PER_BAR_CLOSE or spec.condition in EVENTS:
        return False
    if spec.condition is Condition.VOLUME_SPIKE:
        return False
    return spec.source.is_price and (spec.target is None or spec.target.is_price)


def describe(spec: RuleSpec) -> str:
    """A short human description: 'EMA(20) crossing up EMA(50)', 'close moving up 2% in 10 bars'."""
    words = spec.condition.value.replace("_", " ")
    source = spec.source.label()
    if spec.condition in COMPARISONS:
        other = spec.target.label() if spec.target is not None else _number(spec.level)
        return f"{source} {words} {other}"
    if spec.condition in CHANNELS:
        return f"{source} {words} {_number(spec.level)}-{_number(spec.upper)}"
    if spec.condition in MOVES:
        direction = "up" if spec.condition is Condition.MOVING_UP_PERCENT else "down"
        return f"{source} moving {direction} {_number(spec.percent)}% in {spec.bars} bars"
    if spec.condition is Condition.VOLUME_SPIKE:
        return f"volume above {_number(spec.multiplier)}x its {spec.bars}-bar average"
    if spec.condition is Condition.COLLECTOR_DOWN:
        return f"no new bar for {spec.bars} bars (collector down)"
    if spec.level is not None:
        return f"data quality score below {_number(spec.level)}" + _kinds_words(spec.finding_kinds, " with ")
    return "data quality problem" + _kinds_words(spec.finding_kinds, ": ")


def _kinds_words(kinds: tuple[str, ...], joint: str) -> str:
    return f"{joint}{' or '.join(kind.replace('_', ' ') for kind in kinds)}" if kinds else ""


def _number(value: float | None) -> str:
    return "?" if value is None else f"{value:.10g}"

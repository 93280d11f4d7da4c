"""Latest indicator values, carried forward one closed bar at a time. Pure: no Django imports.

Recomputing TA-Lib over a window for every new bar costs ~1 ms per instrument for the 13
indicators; TA-Lib's streaming handles (`talib.stream`) carry each indicator's own state forward in
O(1) per bar and return values bit-identical to its batch functions over the same bars. So a
`LiveIndicators` is opened once on a window of recent bars (the same bars the batch path would use)
and then fed each bar as it closes, in about 20 microseconds for all 13.

Anchored VWAP is not a TA-Lib stream (TA-Lib's VWAP never restarts): it keeps its two running sums
here, restarted when the anchor period changes, as `compute.anchored_vwap` does in batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import talib
from talib import stream

from indicators.catalogue import MA_TYPES, IndicatorSpec
from indicators.compute import TALIB_CCI_CONSTANT, Context, resolve_anchor
from indicators.series import Bars, FloatArray, anchor_periods
from indicators.sessions import SessionTable

Values = dict[str, float | None]


class LiveBar(NamedTuple):
    time: int  # UTC open time, epoch seconds
    open: float
    high: float
    low: float
    close: float
    volume: float


def _source(bar: LiveBar, name: str) -> float:
    if name == "hl2":
        return (bar.high + bar.low) / 2.0
    if name == "hlc3":
        return (bar.high + bar.low + bar.close) / 3.0
    if name == "ohlc4":
        return (bar.open + bar.high + bar.low + bar.close) / 4.0
    value: float = getattr(bar, name)
    return value


def _finite(value: float) -> float | None:
    return value if value == value and value not in (float("inf"), float("-inf")) else None


class _Tracker:
    """One indicator's live state: opened on history, then updated bar by bar."""

    outputs: tuple[str, ...]

    def open(self, bars: Bars) -> Values:
        raise NotImplementedError

    def update(self, bar: LiveBar) -> Values:
        raise NotImplementedError


@dataclass
class _StreamTracker(_Tracker):
    """A TA-Lib stream handle; opened lazily while the history is shorter than its warm-up."""

    opener: Callable[[Bars], Any]
    feed: Callable[[Any, LiveBar], Any]
    shape: Callable[[LiveBar, Any], Values]
    outputs: tuple[str, ...]
    pending: list[LiveBar] = field(default_factory=list)
    handle: Any = None
    history: Bars | None = None

    def open(self, bars: Bars) -> Values:
        try:
            self.handle = self.opener(bars)
        except talib.InsufficientHistory:  # type: ignore[attr-defined]
            self.history = bars
            return dict.fromkeys(self.outputs)
        last = LiveBar(
            int(bars.time[-1]), *(float(getattr(bars, c)[-1]) for c in ("open", "high", "low", "close", "volume"))
        )
        return self.shape(last, self.handle.value)

    def update(self, bar: LiveBar) -> Values:
        if self.handle is not None:
            return self.shape(bar, self.feed(self.handle, bar))
        # Not enough history yet: keep the bars and try to open again, as the batch path would.
        self.pending.append(bar)
        extra = Bars.from_rows([tuple(b) for b in self.pending])
        history = extra if self.history is None else _concat(self.history, extra)
        self.pending.clear()
        return self.open(history)


def _concat(first: Bars, second: Bars) -> Bars:
    return Bars(*(np.concatenate([getattr(first, n), getattr(second, n)]) for n in Bars.__slots__))


@dataclass
class _VwapTracker(_Tracker):
    anchor: str
    sessions: SessionTable | None
    outputs: tuple[str, ...] = ("vwap",)
    period: int | None = None
    weighted: float = 0.0
    volume: float = 0.0

    def open(self, bars: Bars) -> Values:
        if len(bars) == 0:
            return {"vwap": None}
        periods = anchor_periods(bars.time, self.anchor, self.sessions)
        self.period = int(periods[-1])
        last = periods == periods[-1]
        typical = (bars.high[last] + bars.low[last] + bars.close[last]) / 3.0
        # Sequential sums, in bar order, so the batch path and this one add in the same order.
        self.weighted = float(np.cumsum(typical * bars.volume[last])[-1])
        self.volume = float(np.cumsum(bars.volume[last])[-1])
        return self._value()

    def update(self, bar: LiveBar) -> Values:
        period = int(anchor_periods(np.array([bar.time], dtype=np.int64), self.anchor, self.sessions)[0])
        if period != self.period:
            self.period, self.weighted, self.volume = period, 0.0, 0.0
        self.weighted += (bar.high + bar.low + bar.close) / 3.0 * bar.volume
        self.volume += bar.volume
        return self._value()

    def _value(self) -> Values:
        return {"vwap": self.weighted / self.volume if self.volume > 0 else None}


def _single(name: str) -> Callable[[LiveBar, Any], Values]:
    return lambda bar, value: {name: _finite(value)}


def _named(*names: str) -> Callable[[LiveBar, Any], Values]:
    return lambda bar, values: {name: _finite(value) for name, value in zip(names, values, strict=True)}


def _bbands_shape(source: str) -> Callable[[LiveBar, Any], Values]:
    def shape(bar: LiveBar, values: Any) -> Values:
        upper, middle, lower = values
        width = upper - lower
        bandwidth = 100.0 * width / middle if middle else float("nan")
        percent_b = (_source(bar, source) - lower) / width if width > 0 else float("nan")
        return {
            "upper": _finite(upper),
            "middle": _finite(middle),
            "lower": _finite(lower),
            "bandwidth": _finite(bandwidth),
            "percent_b": _finite(percent_b),
        }

    return shape


def _tracker(spec: IndicatorSpec, context: Context, obv_offset: float) -> _Tracker:
    p = spec.values
    name = spec.name
    if name == "vwap":
        anchor, sessions = resolve_anchor(p["anchor"], context)
        return _VwapTracker(anchor, sessions)
    source = p.get("source", "close")

    def src(bars: Bars) -> FloatArray:
        return bars.source(source)

    def one(handle: Any, bar: LiveBar) -> Any:
        return handle.update(_source(bar, source))

    def hlc(handle: Any, bar: LiveBar) -> Any:
        return handle.update(bar.high, bar.low, bar.close)

    if name in ("sma", "ema", "wma", "rsi"):
        kind = getattr(stream, name.upper())
        return _StreamTracker(lambda bars: kind(src(bars), p["length"]), one, _single(name), (name,))
    if name == "macd":
        outputs = ("macd", "signal", "hist")
        return _StreamTracker(
            lambda bars: stream.MACD(src(bars), p["fast"], p["slow"], p["signal"]), one, _named(*outputs), outputs
        )
    if name == "bbands":
        return _StreamTracker(
            lambda bars: stream.BBANDS(src(bars), p["length"], p["std_up"], p["std_down"], MA_TYPES[p["mamode"]]),
            one,
            _bbands_shape(source),
            ("upper", "middle", "lower", "bandwidth", "percent_b"),
        )
    if name == "atr":
        return _StreamTracker(
            lambda bars: stream.ATR(bars.high, bars.low, bars.close, p["length"]), hlc, _single("atr"), ("atr",)
        )
    if name == "stoch":
        return _StreamTracker(
            lambda bars: stream.STOCH(
                bars.high,
                bars.low,
                bars.close,
                p["k"],
                p["smooth_k"],
                MA_TYPES[p["k_mamode"]],
                p["d"],
                MA_TYPES[p["d_mamode"]],
            ),
            hlc,
            _named("k", "d"),
            ("k", "d"),
        )
    if name == "obv":
        return _StreamTracker(
            lambda bars: stream.OBV(src(bars), bars.volume),
            lambda handle, bar: handle.update(_source(bar, source), bar.volume),
            lambda bar, value: {"obv": _finite(value + obv_offset)},
            ("obv",),
        )
    if name == "adx":
        return _AdxTracker(p["length"])
    if name == "cci":
        scale = TALIB_CCI_CONSTANT / p["c"]
        return _StreamTracker(
            lambda bars: stream.CCI(bars.high, bars.low, bars.close, p["length"]),
            hlc,
            lambda bar, value: {"cci": _finite(value if scale == 1.0 else value * scale)},
            ("cci",),
        )
    if name == "mfi":
        return _StreamTracker(
            lambda bars: stream.MFI(bars.high, bars.low, bars.close, bars.volume, p["length"]),
            lambda handle, bar: handle.update(bar.high, bar.low, bar.close, bar.volume),
            _single("mfi"),
            ("mfi",),
        )
    raise ValueError(f"no live tracker for {name!r}")


class _AdxTracker(_Tracker):
    """ADX, +DI and -DI: three TA-Lib streams, as the batch path makes three TA-Lib calls."""

    outputs = ("adx", "plus_di", "minus_di")

    def __init__(self, length: int) -> None:
        def make(kind: Any, out: str) -> _StreamTracker:
            def opener(bars: Bars) -> Any:
                return kind(bars.high, bars.low, bars.close, length)

            def feed(handle: Any, bar: LiveBar) -> Any:
                return handle.update(bar.high, bar.low, bar.close)

            return _StreamTracker(opener, feed, _single(out), (out,))

        self.parts = [make(stream.ADX, "adx"), make(stream.PLUS_DI, "plus_di"), make(stream.MINUS_DI, "minus_di")]

    def open(self, bars: Bars) -> Values:
        return {k: v for part in self.parts for k, v in part.open(bars).items()}

    def update(self, bar: LiveBar) -> Values:
        return {k: v for part in self.parts for k, v in part.update(bar).items()}


class LiveIndicators:
    """The latest values of some indicators for one series, advanced one closed bar at a time.

    Open it on the recent bars of the series (at least each spec's `history_bars`, so that values
    match the batch path to `SEED_TOLERANCE`); `obv_offset` shifts OBV so that it continues the
    series' OBV from its first stored bar rather than from the window's first bar.
    """

    def __init__(
        self, specs: Sequence[IndicatorSpec], bars: Bars, context: Context | None = None, *, obv_offset: float = 0.0
    ) -> None:
        context = context or Context()
        self.specs = list(specs)
        self.trackers = [_tracker(spec, context, obv_offset) for spec in self.specs]
        self.last_time: int | None = int(bars.time[-1]) if len(bars) else None
        self.values: dict[str, Values] = {}
        for spec, tracker in zip(self.specs, self.trackers, strict=True):
            opened = tracker.open(bars) if len(bars) else dict.fromkeys(tracker.outputs)
            self.values[spec.key] = opened

    def update(self, bar: LiveBar) -> dict[str, Values]:
        """Feed one closed bar (newer than the last one) and return every indicator's new values."""
        if self.last_time is not None and bar.time <= self.last_time:
            raise ValueError(f"bar at {bar.time} is not after the last bar ({self.last_time}); reopen instead")
        self.last_time = bar.time
        values = self.values
        for spec, tracker in zip(self.specs, self.trackers, strict=True):
            values[spec.key] = tracker.update(bar)
        return values


def latest_values(
    specs: Sequence[IndicatorSpec], bars: Bars, context: Context | None = None, *, obv_offset: float = 0.0
) -> dict[str, Values]:
    """The values at the last of `bars` (a pure function of a window of recent bars)."""
    return LiveIndicators(specs, bars, context, obv_offset=obv_offset).values


def live_bars(rows: Iterable[Sequence[float]]) -> list[LiveBar]:
    return [LiveBar(int(row[0]), *map(float, row[1:6])) for row in rows]

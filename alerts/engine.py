"""The alert rule evaluator: many rules, one newest bar per feed, one pass of array operations. Pure.

`compile_rules` turns rules into a `RuleBook`: per rule an operation code and the indices of the
series it compares, with every distinct series of a feed (close, EMA 20, the volume average...)
listed once. `evaluate` computes each distinct series once per feed, takes its last two values
(current and previous bar) into two flat arrays, and then decides every rule at once with numpy:
gather the operands, apply all comparisons, pick each rule's own, and apply the firing options.
So 10,000 rules over 100 instruments cost about as much as the distinct series they read.

Semantics, all on the newest bar (the one just closed, or the partial bar for intrabar rules):
- crossing up: previous source <= previous target and current source > current target
  (crossing down mirrors it; crossing is either); a level is a target that does not move;
- greater/less than: current source strictly above/below the target;
- entering a channel [level, upper]: previous outside, current inside (bounds included);
  exiting: previous inside, current outside;
- moving up X% in N bars: current source >= (1 + X/100) x the source N bars earlier
  (moving down: <= (1 - X/100) x ...); `value` is the move in percent;
- volume spike: current volume > K x the average volume of the N bars before it.
A rule whose operands are not yet defined (indicator warm-up, too few bars) does not fire.

Firing options: a rule fires at most once per bar (never at a bar at or before its last firing,
which also makes replays harmless), not before `cooldown_seconds` of bar time have passed since
its last firing, never after `expires_at`, never while paused, and only once ever for ONCE.
`once_per_bar_close` rules are judged on final bars only; price rules set to `once` or
`once_per_bar` are also judged on partial bars. All times are UTC epoch seconds; `now` is passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from alerts.rules import CHANNELS, COMPARISONS, EVENTS, MOVES, Condition, Frequency, RuleSpec, is_intrabar
from alerts.series import (
    FloatArray,
    SeriesKey,
    field_key,
    lag_key,
    last_two,
    last_two_values,
    operand_key,
    volume_average_key,
    volume_average_last_two,
    warmup_bars,
)
from indicators.catalogue import IndicatorSpec
from indicators.compute import Context, Outputs, computer
from indicators.series import Bars as IndicatorBars
from market.timeframes import timeframe_seconds

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
FeedKey = tuple[int, str]  # (instrument id, timeframe)


class Op(IntEnum):
    CROSS_UP = 0
    CROSS_DOWN = 1
    CROSS = 2
    ABOVE = 3
    BELOW = 4
    AT_LEAST = 5
    AT_MOST = 6
    ENTER = 7
    EXIT = 8


_COMPARISON_OPS = {
    Condition.CROSSING_UP: Op.CROSS_UP,
    Condition.CROSSING_DOWN: Op.CROSS_DOWN,
    Condition.CROSSING: Op.CROSS,
    Condition.GREATER_THAN: Op.ABOVE,
    Condition.LESS_THAN: Op.BELOW,
}


@dataclass(frozen=True, slots=True)
class Bars:
    """The newest bars of one feed, oldest first; the last one is partial unless `final`."""

    time: IntArray  # open times, UTC epoch seconds
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray
    final: bool = True

    @classmethod
    def from_columns(
        cls,
        time: Iterable[int],
        open: Iterable[float],
        high: Iterable[float],
        low: Iterable[float],
        close: Iterable[float],
        volume: Iterable[float],
        *,
        final: bool = True,
    ) -> Bars:
        def floats(values: Iterable[float]) -> FloatArray:
            return np.ascontiguousarray(np.fromiter(values, dtype=np.float64))

        return cls(
            np.fromiter(time, dtype=np.int64),
            floats(open),
            floats(high),
            floats(low),
            floats(close),
            floats(volume),
            final,
        )

    def __len__(self) -> int:
        return len(self.time)

    def tail(self, count: int, *, final: bool | None = None) -> Bars:
        """The last `count` bars (a view, no copy)."""
        start = max(0, len(self.time) - count)
        return Bars(
            self.time[start:],
            self.open[start:],
            self.high[start:],
            self.low[start:],
            self.close[start:],
            self.volume[start:],
            self.final if final is None else final,
        )


class Firing(NamedTuple):
    """A rule that fired (a tuple: a bar close may make thousands of them)."""

    rule_id: int
    bar_time: int  # open time of the bar the rule fired on, UTC epoch seconds
    value: float  # the source's value (for moves: the move in percent)
    close: float
    volume: float
    final: bool  # False: fired on a partial bar (intrabar)


@dataclass(frozen=True)
class RuleBook:
    """Rules compiled to flat arrays (one entry per rule) plus the distinct series they read."""

    rule_ids: IntArray
    feeds: tuple[FeedKey, ...]
    feed_of_rule: IntArray
    # Per feed, in feed order: (series key, bars it needs), each key once. The series table numbers
    # them in this order: feed 0's series first, then feed 1's...
    feed_series: tuple[tuple[tuple[SeriesKey, int], ...], ...]
    # Per feed, how to fill its series' slots (see `_FeedPlan`), built from feed_series.
    plans: tuple[_FeedPlan, ...]
    series_count: int
    op: IntArray
    a: IntArray  # series index of the source
    b: IntArray  # series index of the target, or -1 for the constant b_const
    b_const: FloatArray
    b_scale: FloatArray
    c_const: FloatArray  # a channel's upper bound
    is_move: BoolArray
    intrabar: BoolArray
    once: BoolArray
    cooldown: FloatArray
    expires_at: FloatArray
    active: BoolArray
    lookback: dict[FeedKey, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.rule_ids)

    def last_fired_array(self, last_fired: Mapping[int, float]) -> FloatArray:
        """Rule id -> bar time of its last firing, as an array aligned with the rules (NaN: never)."""
        return np.fromiter((last_fired.get(int(i), np.nan) for i in self.rule_ids), np.float64, len(self.rule_ids))


@dataclass(frozen=True, slots=True)
class _IndicatorStep:
    """One indicator computed once over the newest `window` bars of a feed; each wanted output's
    last two values go to its series slot."""

    run: Callable[[IndicatorBars, Context | None], Outputs]
    window: int
    outputs: tuple[tuple[str, int], ...]  # (output name, slot)


@dataclass(frozen=True, slots=True)
class _FeedPlan:
    """How `evaluate` fills one feed's slots, prepared when the rules are compiled so that a bar
    close costs the indicator computations and little else: price fields (and their lags) are read
    from the bars, each indicator is computed once for all its outputs, and anything rarer (a lag of
    an indicator) goes through the generic `last_two`."""

    fields: tuple[tuple[str, int, int], ...]  # (column, bars back, slot)
    volume_averages: tuple[tuple[int, int], ...]  # (bars, slot)
    indicators: tuple[_IndicatorStep, ...]
    generic: tuple[tuple[SeriesKey, int, int], ...]  # (key, window, slot)


def _feed_plan(series: Iterable[tuple[SeriesKey, int]], first_slot: int) -> _FeedPlan:
    fields: list[tuple[str, int, int]] = []
    averages: list[tuple[int, int]] = []
    indicators: dict[tuple[str, Any, int], list[tuple[str, int]]] = {}
    generic: list[tuple[SeriesKey, int, int]] = []
    for slot, (key, needed) in enumerate(series, start=first_slot):
        kind = key[0]
        if kind == "field":
            fields.append((key[1], 1, slot))
        elif kind == "lag" and key[2][0] == "field":
            fields.append((key[2][1], 1 + int(key[1]), slot))
        elif kind == "volume_average":
            averages.append((int(key[1]), slot))
        elif kind == "ind":
            indicators.setdefault((key[1], key[2], needed), []).append((key[3], slot))
        else:
            generic.append((key, needed, slot))
    steps = tuple(
        _IndicatorStep(computer(IndicatorSpec(name, params)), window, tuple(outputs))
        for (name, params, window), outputs in indicators.items()
    )
    return _FeedPlan(tuple(fields), tuple(averages), steps, tuple(generic))


@dataclass
class _Builder:
    feeds: dict[FeedKey, int] = field(default_factory=dict)
    series: dict[tuple[int, SeriesKey], int] = field(default_factory=dict)
    lookback: dict[FeedKey, int] = field(default_factory=dict)
    warmup: dict[tuple[int, SeriesKey], int] = field(default_factory=dict)

    def series_index(self, feed: FeedKey, key: SeriesKey) -> int:
        feed_index = self.feeds.setdefault(feed, len(self.feeds))
        if (feed_index, key) not in self.series:
            bars = warmup_bars(key, timeframe_seconds(feed[1]))
            self.warmup[(feed_index, key)] = bars
            self.lookback[feed] = max(self.lookback.get(feed, 2), bars)
        return self.series.setdefault((feed_index, key), len(self.series))


def compile_rules(specs: Iterable[RuleSpec]) -> RuleBook:
    """Compile bar rules (not event rules) into a RuleBook. The specs are assumed valid."""
    builder = _Builder()
    ids: list[int] = []
    feed_of_rule: list[int] = []
    ops: list[int] = []
    a: list[int] = []
    b: list[int] = []
    b_const: list[float] = []
    b_scale: list[float] = []
    c_const: list[float] = []
    is_move: list[bool] = []
    intrabar: list[bool] = []
    once: list[bool] = []
    cooldown: list[float] = []
    expires: list[float] = []
    active: list[bool] = []
    nan = float("nan")
    for spec in specs:
        if spec.condition in EVENTS:
            raise ValueError(f"rule {spec.id}: {spec.condition} is an event rule, not evaluated over bars")
        feed = spec.feed
        source = operand_key(spec.source)
        target, constant, scale, upper = -1, nan, 1.0, nan
        if spec.condition in COMPARISONS:
            op = _COMPARISON_OPS[spec.condition]
            if spec.target is not None:
                target = builder.series_index(feed, operand_key(spec.target))
            else:
                constant = _required(spec.level)
        elif spec.condition in CHANNELS:
            op = Op.ENTER if spec.condition is Condition.ENTERING_CHANNEL else Op.EXIT
            constant, upper = _required(spec.level), _required(spec.upper)
        elif spec.condition in MOVES:
            up = spec.condition is Condition.MOVING_UP_PERCENT
            op = Op.AT_LEAST if up else Op.AT_MOST
            target = builder.series_index(feed, lag_key(source, int(_required(spec.bars))))
            scale = 1 + _required(spec.percent) / 100 * (1 if up else -1)
        else:  # volume spike
            op = Op.ABOVE
            source = field_key("volume")
            target = builder.series_index(feed, volume_average_key(int(_required(spec.bars))))
            scale = _required(spec.multiplier)
        ids.append(spec.id)
        a.append(builder.series_index(feed, source))
        feed_of_rule.append(builder.feeds[feed])
        ops.append(op)
        b.append(target)
        b_const.append(constant)
        b_scale.append(scale)
        c_const.append(upper)
        is_move.append(spec.condition in MOVES)
        intrabar.append(is_intrabar(spec))
        once.append(spec.frequency is Frequency.ONCE)
        cooldown.append(float(spec.cooldown_seconds))
        expires.append(np.inf if spec.expires_at is None else float(spec.expires_at))
        active.append(spec.active)

    # Number the series feed by feed, so that evaluate fills each feed's slots in one run.
    feed_series: list[list[tuple[SeriesKey, int]]] = [[] for _ in builder.feeds]
    renumber = np.empty(len(builder.series) + 1, dtype=np.int64)
    renumber[-1] = -1  # a constant target stays -1
    by_feed = sorted(builder.series.items(), key=lambda item: item[0][0])
    for new, ((feed_index, key), old) in enumerate(by_feed):
        renumber[old] = new
        feed_series[feed_index].append((key, builder.warmup[(feed_index, key)]))
    plans, first_slot = [], 0
    for items in feed_series:
        plans.append(_feed_plan(items, first_slot))
        first_slot += len(items)
    return RuleBook(
        rule_ids=np.array(ids, dtype=np.int64),
        feeds=tuple(builder.feeds),
        feed_of_rule=np.array(feed_of_rule, dtype=np.int64),
        feed_series=tuple(tuple(items) for items in feed_series),
        plans=tuple(plans),
        series_count=len(builder.series),
        op=np.array(ops, dtype=np.int64),
        a=renumber[np.array(a, dtype=np.int64)],
        b=renumber[np.array(b, dtype=np.int64)],
        b_const=np.array(b_const, dtype=np.float64),
        b_scale=np.array(b_scale, dtype=np.float64),
        c_const=np.array(c_const, dtype=np.float64),
        is_move=np.array(is_move, dtype=np.bool_),
        intrabar=np.array(intrabar, dtype=np.bool_),
        once=np.array(once, dtype=np.bool_),
        cooldown=np.array(cooldown, dtype=np.float64),
        expires_at=np.array(expires, dtype=np.float64),
        active=np.array(active, dtype=np.bool_),
        lookback=builder.lookback,
    )


def _required(value: float | int | None) -> float:
    if value is None:
        raise ValueError("rule parameter missing; validate rules with alerts.rules.rule_errors first")
    return float(value)


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """Current and previous values of every series, and each feed's newest bar."""

    cur: FloatArray  # one slot per series, plus a trailing NaN that index -1 reads
    prev: FloatArray
    time: FloatArray  # per feed: newest bar time, NaN if the feed has no bars
    final: BoolArray
    close: FloatArray
    volume: FloatArray


def _snapshot(book: RuleBook, bars_by_feed: Mapping[FeedKey, Bars], contexts: Mapping[FeedKey, Context]) -> _Snapshot:
    feeds = len(book.feeds)
    time, close, volume = np.full(feeds, np.nan), np.full(feeds, np.nan), np.full(feeds, np.nan)
    final = np.zeros(feeds, dtype=np.bool_)
    # Slots and their (current, previous) values, gathered in lists and written in one go at the end.
    slots: list[int] = []
    pairs: list[tuple[float, float]] = []
    for feed_index, (feed, plan) in enumerate(zip(book.feeds, book.plans, strict=True)):
        bars = bars_by_feed.get(feed)
        if bars is None or len(bars) == 0:
            continue  # its slots stay NaN
        count = len(bars)
        time[feed_index], final[feed_index] = bars.time[-1], bars.final
        close[feed_index], volume[feed_index] = bars.close[-1], bars.volume[-1]
        for column, back, slot in plan.fields:
            slots.append(slot)
            pairs.append(last_two_values(getattr(bars, column), back))
        for length, slot in plan.volume_averages:
            slots.append(slot)
            pairs.append(volume_average_last_two(bars.volume, length))
        context = contexts.get(feed)
        whole = _last_bars(bars, count)
        windows: dict[int, IndicatorBars] = {}
        for step in plan.indicators:
            # An indicator is computed over only the bars it needs: SMA 20 reads 22 bars even when
            # an EMA 50 of the same feed reads 685.
            window = windows.get(step.window)  # not `or`: a window's truth value would call len()
            if window is None:
                window = windows[step.window] = _last_bars(bars, step.window) if step.window < count else whole
            outputs = step.run(window, context)
            for name, slot in step.outputs:
                slots.append(slot)
                pairs.append(last_two_values(outputs[name]))
        cache: dict[tuple[SeriesKey, int], FloatArray] = {}
        for key, needed, slot in plan.generic:
            slots.append(slot)
            pairs.append(last_two(key, _last_bars(bars, needed), cache, context))
    # One trailing NaN slot that a constant target's index -1 reads.
    cur = np.full(book.series_count + 1, np.nan)
    prev = np.full(book.series_count + 1, np.nan)
    if pairs:
        cur[slots], prev[slots] = zip(*pairs, strict=True)
    return _Snapshot(cur, prev, time, final, close, volume)


def _last_bars(bars: Bars, count: int) -> IndicatorBars:
    start = max(0, len(bars) - count)
    return IndicatorBars(
        bars.time[start:],
        bars.open[start:],
        bars.high[start:],
        bars.low[start:],
        bars.close[start:],
        bars.volume[start:],
    )


def _conditions(book: RuleBook, snap: _Snapshot) -> tuple[BoolArray, FloatArray]:
    """Which rules' conditions hold on the newest bar, and each rule's value."""
    a_cur, a_prev = snap.cur[book.a], snap.prev[book.a]
    constant = book.b < 0
    b_raw_cur = np.where(constant, book.b_const, snap.cur[book.b])
    b_raw_prev = np.where(constant, book.b_const, snap.prev[book.b])
    b_cur, b_prev = b_raw_cur * book.b_scale, b_raw_prev * book.b_scale
    upper = book.c_const
    defined = ~np.isnan(a_prev)
    inside_cur = (a_cur >= b_cur) & (a_cur <= upper)
    inside_prev = (a_prev >= b_prev) & (a_prev <= upper)
    up = (a_prev <= b_prev) & (a_cur > b_cur)
    down = (a_prev >= b_prev) & (a_cur < b_cur)
    masks = np.stack(
        [
            up,
            down,
            up | down,
            a_cur > b_cur,
            a_cur < b_cur,
            a_cur >= b_cur,
            a_cur <= b_cur,
            defined & ~inside_prev & inside_cur,
            defined & ~np.isnan(a_cur) & inside_prev & ~inside_cur,
        ]
    )
    hit = masks[book.op, np.arange(len(book.op))]
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.where(book.is_move, (a_cur / b_raw_cur - 1) * 100, a_cur)
    return hit, value


def evaluate(
    book: RuleBook,
    bars_by_feed: Mapping[FeedKey, Bars],
    *,
    now: float,
    last_fired: FloatArray | Mapping[int, float] | None = None,
    contexts: Mapping[FeedKey, Context] | None = None,
) -> list[Firing]:
    """The rules that fire on each feed's newest bar.

    `last_fired` holds, per rule (aligned with `book.rule_ids`, or as a mapping rule id -> time), the
    bar time of its last firing (NaN or absent: never fired). Feeds missing from `bars_by_feed` are
    skipped. `now` (epoch seconds) is only compared with expiry dates. `contexts` tells indicators
    about a feed's instrument (a stock's exchange sessions anchor its VWAP); absent: around the clock.
    """
    if len(book) == 0:
        return []
    last: FloatArray
    if last_fired is None:
        last = np.full(len(book), np.nan)
    elif isinstance(last_fired, np.ndarray):
        last = last_fired
    else:
        last = book.last_fired_array(last_fired)
    snap = _snapshot(book, bars_by_feed, contexts or {})
    hit, value = _conditions(book, snap)

    bar_time = snap.time[book.feed_of_rule]
    never = np.isnan(last)
    # NaN bar time (feed without bars) makes every comparison below False.
    after_last = never | ((bar_time > last) & (bar_time >= last + book.cooldown))
    eligible = (
        book.active
        & (now < book.expires_at)
        & (snap.final[book.feed_of_rule] | book.intrabar)
        & (bar_time == bar_time)
        & after_last
        & ~(book.once & ~never)
    )
    fired = np.flatnonzero(hit & eligible)
    feed = book.feed_of_rule[fired]
    columns = (
        book.rule_ids[fired].tolist(),
        snap.time[feed].astype(np.int64).tolist(),
        value[fired].tolist(),
        snap.close[feed].tolist(),
        snap.volume[feed].tolist(),
        snap.final[feed].tolist(),
    )
    return [Firing(*row) for row in zip(*columns, strict=True)]

"""Trades to 1-minute bars. Pure: plain data in, plain data out, no Django, no clock.

Conventions (the same as exchanges' own klines and freqtrade's candles):
- a bar covers [open time, open time + 1 minute) in UTC, by the trade's exchange timestamp;
- open is the earliest trade, close the latest (ties: arrival order), high/low the extremes, volume
  the summed amount, `trades` the count and `vwap` the volume-weighted price;
- a minute without trades produces no bar (no forward-filled "flat" bars).

Late trades: a trade for a minute that has already closed is dropped and counted as late, unless it
arrives within `grace_ms` of that minute's end (by the source's clock, as far as the builder knows
it: clock events and the open minute). Then it corrects the closed bar, which `add` returns again so
that the caller stores and publishes the corrected version.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

MINUTE_MS = 60_000


@dataclass(slots=True)
class Trade:
    """One trade. Treat as immutable. Not `frozen=True` on purpose: collectors make hundreds of
    thousands a second, and a frozen dataclass's __init__ (object.__setattr__ per field) costs five
    times a plain slotted one's (a NamedTuple's, twice)."""

    time_ms: int
    trade_id: str
    price: float
    amount: float
    #: The trade's number in a sequence the source counts up without gaps per instrument (Binance's
    #: aggregate trade id), or -1. With it, deduplication needs no set of ids (see BarBuilder).
    seq: int = -1


@dataclass(slots=True)
class MinuteBar:
    """A 1m bar under construction or closed. `time_ms` is the UTC open time in milliseconds."""

    time_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    trades: int
    notional: float  # sum(price * amount), kept so vwap stays exact as trades arrive
    first_ms: int = 0  # time of the trade that set `open`
    last_ms: int = 0  # time of the trade that set `close`

    @property
    def vwap(self) -> float | None:
        return self.notional / self.volume if self.volume > 0 else None

    @classmethod
    def from_trade(cls, trade: Trade, time_ms: int) -> MinuteBar:
        price = trade.price
        return cls(
            time_ms, price, price, price, price, trade.amount, 1, price * trade.amount, trade.time_ms, trade.time_ms
        )

    def add(self, trade: Trade) -> None:
        self.take(trade.time_ms, trade.price, trade.amount)

    def take(self, time_ms: int, price: float, amount: float) -> None:
        """A trade of this minute, given as its values (no Trade record needed)."""
        if price > self.high:
            self.high = price
        elif price < self.low:
            self.low = price
        if time_ms >= self.last_ms:
            self.close = price
            self.last_ms = time_ms
        elif time_ms < self.first_ms:
            # Arrived out of order and is older than the trade that opened the bar.
            self.open = price
            self.first_ms = time_ms
        self.volume += amount
        self.trades += 1
        self.notional += price * amount


@dataclass(slots=True)
class TradeRun:
    """Trades of one instrument in arrival order, as parallel lists: what a replay or a catch-up
    delivers in one go, so that it costs no record per trade (see `BarBuilder.add_run`).

    The trades carry consecutive sequence numbers, `first_seq` upwards (Binance aggregate trade ids).
    `clocks` holds (index, time_ms) pairs in order: after trade `index` the source's clock reached
    `time_ms`, the clock events a stream of single trades would have had between them."""

    time_ms: list[int]
    price: list[float]
    amount: list[float]
    first_seq: int
    clocks: list[tuple[int, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.first_seq < 0:
            raise ValueError("a TradeRun's trades need sequence numbers (first_seq >= 0)")

    def __len__(self) -> int:
        return len(self.time_ms)

    def trades(self) -> Iterator[Trade]:
        for offset, (time_ms, price, amount) in enumerate(zip(self.time_ms, self.price, self.amount, strict=True)):
            seq = self.first_seq + offset
            yield Trade(time_ms, str(seq), price, amount, seq)


@dataclass(slots=True)
class BuilderStats:
    accepted: int = 0
    duplicates: int = 0
    late: int = 0  # dropped: their minute had closed more than the grace period ago
    corrections: int = 0  # accepted late, within the grace period: a closed bar was corrected
    invalid: int = 0


@dataclass(slots=True)
class BarBuilder:
    """Builds 1m bars for one instrument from its trades, in arrival order.

    `add` returns the bars that the trade closed (the previous minute, once a trade of a later
    minute arrives) or corrected (a late trade within the grace period); `close_until` closes the open
    bar when the clock has passed its end, so a quiet market still closes bars. Trades whose id was
    already seen are dropped (exchanges resend on reconnect).

    Deduplication: a trade with a sequence number (`Trade.seq`) is new when it is above the highest
    seen, or when it falls into a hole the sequence skipped (it arrived out of order); anything else
    is a resend. Two integer comparisons per trade instead of a set of ids; the holes are kept as
    ranges, the newest `max_holes` of them. Trades without a sequence number go by id, in a set.
    """

    #: Trade ids remembered for deduplication: between half of this and this many, the latest.
    dedupe_window: int = 100_000
    max_holes: int = 1000
    grace_ms: int = 0
    current: MinuteBar | None = None
    last_closed_ms: int = -1
    clock_ms: int = -1  # the latest source time seen through `close_until`
    stats: BuilderStats = field(default_factory=BuilderStats)
    # Two generations of seen ids: when the newer one is full the older is forgotten. Cheaper per
    # trade than an exact sliding window (a set plus a deque), and as good against resends.
    _seen: set[str] = field(default_factory=set)
    _seen_before: set[str] = field(default_factory=set)
    _recent: dict[int, MinuteBar] = field(default_factory=dict)  # closed bars still open to corrections
    _high_seq: int = -1  # the highest sequence number accepted
    _holes: list[list[int]] = field(default_factory=list)  # [start, end) skipped below it, oldest first

    def add(self, trade: Trade) -> list[MinuteBar]:
        price = trade.price
        amount = trade.amount
        if not (price > 0 and amount >= 0):  # also false for NaN
            self.stats.invalid += 1
            return []
        seq = trade.seq
        if seq >= 0:
            high = self._high_seq
            if seq > high:
                if seq > high + 1 and high >= 0:
                    self._note_hole(high + 1, seq)
                self._high_seq = seq
            elif not self._fill_hole(seq):
                self.stats.duplicates += 1
                return []
        elif trade_id := trade.trade_id:
            seen = self._seen
            if trade_id in seen or trade_id in self._seen_before:
                self.stats.duplicates += 1
                return []
            seen.add(trade_id)
            if len(seen) >= self.dedupe_window // 2:
                self._seen_before, self._seen = seen, set()
        time_ms = trade.time_ms
        minute = time_ms - time_ms % MINUTE_MS
        current = self.current
        if current is not None and minute == current.time_ms:
            self.stats.accepted += 1
            current.take(time_ms, price, amount)
            return []
        return self._place(trade, minute)

    def _place(self, trade: Trade, minute: int) -> list[MinuteBar]:
        """A new, valid trade that does not extend the open bar: it opens the bar of a later minute
        (closing the open one) or the first bar, or it is late."""
        current = self.current
        if current is not None:
            if minute > current.time_ms:
                self.stats.accepted += 1
                closed = self._close_current()
                self.current = MinuteBar.from_trade(trade, minute)
                return [closed]
            return self._add_late(trade, minute)
        if minute <= self.last_closed_ms:
            return self._add_late(trade, minute)
        self.stats.accepted += 1
        self.current = MinuteBar.from_trade(trade, minute)
        return []

    def add_run(self, run: TradeRun) -> list[MinuteBar]:
        """`add` for each trade of the run, with `close_until` at each of its clock points: the same
        bars, the same counts, in the same order, in about 60% of the time that building each `Trade`
        and calling `add` takes (0.52 against 0.87 µs a trade on the real XRP/ETH trades). A run of new
        sequence numbers (the usual case) is judged as a whole, and the trades that extend the open
        bar take a loop that makes no record per trade; a run that repeats numbers already seen goes
        through `add` trade by trade."""
        first = run.first_seq
        high = self._high_seq
        if first <= high:  # resends or trades out of order: `add` sorts them out, trade by trade
            return self._add_run_by_trade(run)
        closed: list[MinuteBar] = []
        clocks = iter(run.clocks)
        clock_at, clock_ms = next(clocks, (-1, 0))
        stats = self.stats
        current = self.current
        for index, (time_ms, price, amount) in enumerate(zip(run.time_ms, run.price, run.amount, strict=True)):
            if not (price > 0 and amount >= 0):  # also true for NaN
                stats.invalid += 1  # refused before its number is looked at, as `add` does
            else:
                seq = first + index  # new: above every number seen
                if seq != high + 1 and high >= 0:
                    self._note_hole(high + 1, seq)
                high = seq
                minute = time_ms - time_ms % MINUTE_MS
                if current is not None and minute == current.time_ms:
                    stats.accepted += 1  # the usual trade: as in `add`, without a Trade record
                    current.take(time_ms, price, amount)
                else:
                    closed += self._place(Trade(time_ms, str(seq), price, amount, seq), minute)
                    current = self.current
            if index == clock_at:
                closed += self.close_until(clock_ms)
                current = self.current
                clock_at, clock_ms = next(clocks, (-1, 0))
        self._high_seq = high
        return closed

    def _add_run_by_trade(self, run: TradeRun) -> list[MinuteBar]:
        closed: list[MinuteBar] = []
        clocks = dict(run.clocks)
        for index, trade in enumerate(run.trades()):
            closed += self.add(trade)
            if index in clocks:
                closed += self.close_until(clocks[index])
        return closed

    def close_until(self, now_ms: int) -> list[MinuteBar]:
        """Close the open bar if `now_ms` (the source's clock) has reached its end."""
        if now_ms > self.clock_ms:
            self.clock_ms = now_ms
            if self._recent:
                self._forget_old(now_ms)
        current = self.current
        if current is not None and now_ms >= current.time_ms + MINUTE_MS:
            return [self._close_current()]
        return []

    def flush(self) -> list[MinuteBar]:
        """Close whatever is open (end of a recording, shutdown)."""
        return [self._close_current()] if self.current is not None else []

    def _note_hole(self, start: int, end: int) -> None:
        holes = self._holes
        holes.append([start, end])
        if len(holes) > self.max_holes:
            del holes[0]

    def _fill_hole(self, seq: int) -> bool:
        """Is `seq` in a hole (then it is taken out of it), i.e. not seen before?"""
        holes = self._holes
        for index in range(len(holes) - 1, -1, -1):  # newest first: late trades are usually recent
            start, end = holes[index]
            if start <= seq < end:
                if end - start == 1:
                    del holes[index]
                elif seq == start:
                    holes[index][0] = seq + 1
                else:
                    holes[index][1] = seq
                    if seq + 1 < end:
                        holes.insert(index + 1, [seq + 1, end])
                return True
        return False

    def _add_late(self, trade: Trade, minute: int) -> list[MinuteBar]:
        """A trade for a minute that is over (as far as this stream is concerned)."""
        now = self.clock_ms if self.current is None else max(self.clock_ms, self.current.time_ms)
        if self.grace_ms <= 0 or now >= minute + MINUTE_MS + self.grace_ms:
            self.stats.late += 1
            return []
        self.stats.accepted += 1
        self.stats.corrections += 1
        bar = self._recent.get(minute)
        if bar is None:
            # The minute had no trade until now: its bar appears late rather than never.
            bar = self._recent[minute] = MinuteBar.from_trade(trade, minute)
        else:
            bar.add(trade)
        if minute > self.last_closed_ms:
            self.last_closed_ms = minute
        return [bar]

    def _close_current(self) -> MinuteBar:
        closed = self.current
        assert closed is not None
        self.last_closed_ms = closed.time_ms
        self.current = None
        if self.grace_ms > 0:
            self._recent[closed.time_ms] = closed
            self._forget_old(max(self.clock_ms, closed.time_ms + MINUTE_MS))
        return closed

    def _forget_old(self, now_ms: int) -> None:
        horizon = now_ms - MINUTE_MS - self.grace_ms
        for minute in [minute for minute in self._recent if minute < horizon]:
            del self._recent[minute]


def build_bars(trades: Iterable[Trade]) -> list[MinuteBar]:
    """All 1m bars of a finished sequence of trades (a recording, a backfill)."""
    builder = BarBuilder()
    bars: list[MinuteBar] = []
    for trade in trades:
        bars.extend(builder.add(trade))
    bars.extend(builder.flush())
    return bars

"""Trades to 1-minute bars. Pure: plain data in, plain data out, no Django, no clock.

Conventions (the same as exchanges' own klines and freqtrade's candles):
- a bar covers [open time, open time + 1 minute) in UTC, by the trade's exchange timestamp;
- open is the first trade, close the last, high/low the extremes, volume the summed amount,
  `trades` the count and `vwap` the volume-weighted price;
- a minute without trades produces no bar (no forward-filled "flat" bars).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

MINUTE_MS = 60_000


@dataclass(frozen=True, slots=True)
class Trade:
    time_ms: int
    trade_id: str
    price: float
    amount: float


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

    @property
    def vwap(self) -> float | None:
        return self.notional / self.volume if self.volume > 0 else None

    @classmethod
    def from_trade(cls, trade: Trade, time_ms: int) -> MinuteBar:
        return cls(
            time_ms=time_ms,
            open=trade.price,
            high=trade.price,
            low=trade.price,
            close=trade.price,
            volume=trade.amount,
            trades=1,
            notional=trade.price * trade.amount,
        )

    def add(self, trade: Trade) -> None:
        price = trade.price
        if price > self.high:
            self.high = price
        elif price < self.low:
            self.low = price
        self.close = price
        self.volume += trade.amount
        self.trades += 1
        self.notional += price * trade.amount


@dataclass(slots=True)
class BuilderStats:
    accepted: int = 0
    duplicates: int = 0
    late: int = 0
    invalid: int = 0


@dataclass(slots=True)
class BarBuilder:
    """Builds 1m bars for one instrument from its trades, in arrival order.

    `add` returns the bars that the trade closed (the previous minute, once a trade of a later
    minute arrives); `close_until` closes the open bar when the clock has passed its end, so a
    quiet market still closes bars. Trades whose id was already seen are dropped (exchanges resend
    on reconnect); trades for a minute that has already closed are counted as late and dropped.
    """

    dedupe_window: int = 100_000
    current: MinuteBar | None = None
    last_closed_ms: int = -1
    stats: BuilderStats = field(default_factory=BuilderStats)
    _seen: set[str] = field(default_factory=set)
    _seen_order: deque[str] = field(default_factory=deque)

    def add(self, trade: Trade) -> list[MinuteBar]:
        if not (trade.price > 0 and trade.amount >= 0):
            self.stats.invalid += 1
            return []
        if self._already_seen(trade.trade_id):
            self.stats.duplicates += 1
            return []
        minute = trade.time_ms - trade.time_ms % MINUTE_MS
        if minute <= self.last_closed_ms:
            self.stats.late += 1
            return []
        self.stats.accepted += 1
        current = self.current
        if current is None:
            self.current = MinuteBar.from_trade(trade, minute)
            return []
        if minute == current.time_ms:
            current.add(trade)
            return []
        if minute < current.time_ms:
            # Older than the open bar: its minute is over as far as this stream is concerned.
            self.stats.late += 1
            return []
        closed = self._close_current()
        self.current = MinuteBar.from_trade(trade, minute)
        return [closed]

    def close_until(self, now_ms: int) -> list[MinuteBar]:
        """Close the open bar if `now_ms` (the source's clock) has reached its end."""
        current = self.current
        if current is not None and now_ms >= current.time_ms + MINUTE_MS:
            return [self._close_current()]
        return []

    def flush(self) -> list[MinuteBar]:
        """Close whatever is open (end of a recording, shutdown)."""
        return [self._close_current()] if self.current is not None else []

    def _close_current(self) -> MinuteBar:
        closed = self.current
        assert closed is not None
        self.last_closed_ms = closed.time_ms
        self.current = None
        return closed

    def _already_seen(self, trade_id: str) -> bool:
        if not trade_id:
            return False
        seen = self._seen
        if trade_id in seen:
            return True
        seen.add(trade_id)
        order = self._seen_order
        order.append(trade_id)
        if len(order) > self.dedupe_window:
            seen.discard(order.popleft())
        return False


def build_bars(trades: Iterable[Trade]) -> list[MinuteBar]:
    """All 1m bars of a finished sequence of trades (a recording, a backfill)."""
    builder = BarBuilder()
    bars: list[MinuteBar] = []
    for trade in trades:
        bars.extend(builder.add(trade))
    bars.extend(builder.flush())
    return bars

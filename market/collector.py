"""The collector: one source's events in, stored final bars and live updates out.

Each instrument gets a pure `BarBuilder`. Final bars are stored in batches through
`services.store_bars` (which publishes them after commit); partial bars are published straight to
the channel layer, at most `partial_per_second` times a second per instrument. If the database is
unreachable, final bars stay buffered (up to `max_buffered`) and are written when it returns.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from django.db import DatabaseError, close_old_connections

from market.bars import MINUTE_MS, BarBuilder, MinuteBar
from market.barstore import BarRow
from market.models import Bar, Instrument
from market.services import apublish_bar, store_bars, utc_from_ms
from market.sources.base import ClockEvent, Source, TradeEvent
from market.timeframes import BASE_TIMEFRAME

log = logging.getLogger(__name__)


@dataclass(slots=True)
class CollectorStats:
    events: int = 0
    trades: int = 0
    bars_stored: int = 0
    partials_published: int = 0
    store_failures: int = 0
    dropped_bars: int = 0
    unknown_symbol: int = 0


def to_row(instrument_id: int, bar: MinuteBar, *, final: bool) -> BarRow:
    return BarRow(
        instrument_id,
        BASE_TIMEFRAME,
        utc_from_ms(bar.time_ms),
        bar.open,
        bar.high,
        bar.low,
        bar.close,
        bar.volume,
        bar.trades,
        bar.vwap,
        final,
    )


def load_instruments(exchange: str) -> dict[str, int]:
    """Active instruments of an exchange: symbol -> id."""
    return dict(Instrument.objects.active().filter(exchange__code=exchange).values_list("symbol", "id"))


def resume_points(instrument_ids: dict[str, int]) -> dict[str, int | None]:
    """Per symbol, the last millisecond already covered by a final 1m bar (None: nothing stored)."""
    points: dict[str, int | None] = {}
    for symbol, instrument_id in instrument_ids.items():
        last = (
            Bar.objects.filter(instrument_id=instrument_id, timeframe=BASE_TIMEFRAME, final=True)
            .order_by("-time")
            .values_list("time", flat=True)
            .first()
        )
        points[symbol] = None if last is None else int(last.timestamp() * 1000) + MINUTE_MS - 1
    return points


def _store_and_release(rows: Sequence[BarRow]) -> None:
    # Runs in a worker thread: drop a connection the database closed while we were idle.
    close_old_connections()
    store_bars(rows)


@dataclass
class Collector:
    source: Source
    flush_bars: int = 500
    flush_seconds: float = 0.1
    partial_per_second: float = 4.0
    max_buffered: int = 1_000_000
    clock: Callable[[], float] = time.monotonic
    stats: CollectorStats = field(default_factory=CollectorStats)
    builders: dict[str, BarBuilder] = field(default_factory=dict)
    instruments: dict[str, int] = field(default_factory=dict)
    _pending: list[BarRow] = field(default_factory=list)
    _last_partial: dict[str, float] = field(default_factory=dict)
    _flush_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def run(self) -> CollectorStats:
        self.instruments = await sync_to_async(load_instruments)(self.source.exchange)
        if not self.instruments:
            log.warning("no active instruments on %s: nothing to collect", self.source.exchange)
            return self.stats
        resume = await sync_to_async(resume_points)(self.instruments)
        log.info("collecting %s for %s", self.source.name, ", ".join(sorted(self.instruments)))
        flusher = asyncio.create_task(self._flush_periodically())
        try:
            async for event in self.source.stream(resume):
                self.stats.events += 1
                if isinstance(event, TradeEvent):
                    await self._on_trade(event)
                elif isinstance(event, ClockEvent):
                    await self._on_clock(event.time_ms)
        finally:
            flusher.cancel()
            await self.shutdown()
        return self.stats

    async def shutdown(self) -> None:
        """Store what is pending; bars still open are stored as non-final so nothing is lost."""
        for symbol, builder in self.builders.items():
            if builder.current is not None:
                self._pending.append(to_row(self.instruments[symbol], builder.current, final=False))
        await self.flush()

    async def _on_trade(self, event: TradeEvent) -> None:
        instrument_id = self.instruments.get(event.symbol)
        if instrument_id is None:
            self.stats.unknown_symbol += 1
            return
        builder = self.builders.get(event.symbol)
        if builder is None:
            builder = self.builders[event.symbol] = BarBuilder()
        self.stats.trades += 1
        closed = builder.add(event.trade)
        for bar in closed:
            self._pending.append(to_row(instrument_id, bar, final=True))
        if len(self._pending) >= self.flush_bars:
            await self.flush()
        if builder.current is not None:
            await self._publish_partial(event.symbol, instrument_id, builder.current)

    async def _on_clock(self, now_ms: int) -> None:
        for symbol, builder in self.builders.items():
            for bar in builder.close_until(now_ms):
                self._pending.append(to_row(self.instruments[symbol], bar, final=True))
        if self._pending:
            # A minute boundary closes every instrument's bar at once: write and publish them now.
            await self.flush()

    async def _publish_partial(self, symbol: str, instrument_id: int, bar: MinuteBar) -> None:
        now = self.clock()
        if now - self._last_partial.get(symbol, float("-inf")) < 1.0 / self.partial_per_second:
            return
        self._last_partial[symbol] = now
        self.stats.partials_published += 1
        await apublish_bar(to_row(instrument_id, bar, final=False))

    async def flush(self) -> None:
        async with self._flush_lock:
            if not self._pending:
                return
            rows, self._pending = self._pending, []
            try:
                await sync_to_async(_store_and_release)(rows)
            except DatabaseError as exc:
                self.stats.store_failures += 1
                self._pending = rows + self._pending
                log.error("could not store %d bars (kept for retry): %s", len(rows), exc)
                self._drop_overflow()
                return
            self.stats.bars_stored += len(rows)

    def _drop_overflow(self) -> None:
        excess = len(self._pending) - self.max_buffered
        if excess > 0:
            self.stats.dropped_bars += excess
            log.error("bar buffer full: dropped the %d oldest bars", excess)
            del self._pending[:excess]

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.flush_seconds)
            await self.flush()

"""The collector: one source's events in, stored final bars and live updates out.

Each instrument gets a pure `BarBuilder`. The hot path (a trade, in `_consume`) does no I/O and awaits nothing:
final bars go to a pending list that a flusher writes in batches through `services.store_bars`; once
committed they queue for a publisher task, which broadcasts what piled up as one batch per series
(`services.apublish_stored_bars`) while the flusher goes on storing; partial bars are published by a
ticker at most `partial_per_second` times a second per instrument. Around that:
- the symbols follow the database: active instruments are re-read every `symbols_refresh_seconds`
  and the source subscribes or unsubscribes without a restart;
- with a calendar (stocks), the source is only connected during sessions;
- when the database is unreachable, final bars stay buffered (at most `max_buffered`, the oldest are
  dropped and counted beyond that) and the writes back off exponentially instead of spinning;
- exchange bars (klines) are checked against ours once the late-trade grace period is over;
- a `GapEvent` (trades a source could not fetch) goes to `backfill_gap`, the bar-level history;
- health is written to `CollectorStatus` every `health_seconds`.
Cancelling `run` (SIGTERM) stores the open bars as non-final and flushes before returning.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from contextlib import aclosing, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.db import DatabaseError, InterfaceError, close_old_connections

from market.bars import MINUTE_MS, BarBuilder, MinuteBar
from market.barstore import BarRow, InvalidBars
from market.circuit import Backoff
from market.collector_health import HealthSnapshot, state_for, try_save_health
from market.groups import bars_group
from market.market_hours import MarketHours
from market.models import Bar, Instrument
from market.reconcile import Verdict, reconcile
from market.services import (
    apublish_bar,
    apublish_collector_state,
    apublish_stored_bars,
    aschedule_intrabar_alerts,
    listened_groups,
    store_bars,
    utc_from_ms,
)
from market.sources.base import (
    BarEvent,
    ClockEvent,
    ExchangeBar,
    GapEvent,
    KlineEvent,
    Source,
    SourceEvent,
    Subscription,
    TradeBatch,
    TradeEvent,
)
from market.timeframes import BASE_TIMEFRAME

log = logging.getLogger(__name__)

# Closed bars kept per instrument to check the exchange's bars against: after a catch-up over REST the
# exchange's closes of the minutes caught up arrive only then, so keep an hour, not a few minutes.
RECENT_MINUTES = 60


@dataclass(slots=True)
class CollectorStats:
    other_events: int = 0  # clock, bar, kline and gap events
    trades: int = 0
    source_bars: int = 0
    bars_stored: int = 0
    partials_published: int = 0
    finals_published: int = 0
    store_failures: int = 0
    dropped_bars: int = 0
    rejected_bars: int = 0
    unknown_symbol: int = 0
    klines: int = 0
    gaps: int = 0
    gaps_backfill_requested: int = 0
    reconciled: Counter[str] = field(default_factory=Counter)

    @property
    def events(self) -> int:
        return self.trades + self.unknown_symbol + self.other_events


@dataclass(slots=True)
class Tracked:
    """One instrument being collected."""

    symbol: str
    instrument_id: int
    builder: BarBuilder
    dirty: bool = False  # changed since the last partial update
    partial: MinuteBar | None = None  # a partial bar supplied by the source (bar sources)
    recent: dict[int, MinuteBar] = field(default_factory=dict)
    klines: list[ExchangeBar] = field(default_factory=list)  # closed exchange bars not yet checked


def to_row(instrument_id: int, bar: MinuteBar, *, final: bool) -> BarRow:
    volume = bar.volume
    return BarRow(
        instrument_id,
        BASE_TIMEFRAME,
        utc_from_ms(bar.time_ms),
        bar.open,
        bar.high,
        bar.low,
        bar.close,
        volume,
        bar.trades or None,  # 0 only for bars from sources that do not count trades
        bar.notional / volume if volume > 0 and bar.notional > 0 else None,
        final,
    )


def in_shard(symbol: str, shard: tuple[int, int] | None) -> bool:
    """`shard` (i, n): this collector takes the symbols whose stable hash is i modulo n."""
    return shard is None or zlib.crc32(symbol.encode()) % shard[1] == shard[0]


def load_instruments(
    exchange: str, asset_classes: Sequence[str] = (), shard: tuple[int, int] | None = None
) -> dict[str, int]:
    """Active instruments of an exchange: symbol -> id."""
    queryset = Instrument.objects.active().filter(exchange__code=exchange)
    if asset_classes:
        queryset = queryset.filter(asset_class__in=asset_classes)
    return {symbol: id_ for symbol, id_ in queryset.values_list("symbol", "id") if in_shard(symbol, shard)}


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


def backfill_gap(instrument_id: int, start_ms: int, end_ms: int) -> None:
    """Have [start, end) of an instrument's 1m bars fetched from its source's REST history.

    The one call point into the bar backfill (`market.backfill`, with its history clients in
    `market.history`). `request_gap_fill` schedules the gap-fill task once the current transaction
    commits (a Celery worker; in-process when tasks run eagerly), so the collector does not wait for
    history requests. Runs in a worker thread.
    """
    from market.backfill import request_gap_fill

    close_old_connections()
    request_gap_fill(instrument_id, utc_from_ms(start_ms), utc_from_ms(end_ms))


# How long a thread may hold the GIL while another waits for it (Python's default: 5 ms).
GIL_SWITCH_SECONDS = 0.0005


def prepare_process() -> None:
    """Call once before a long-running collector starts, in its process:

    - Load the indicator engine it will need (pandas-ta, numba, TA-Lib) now rather than in the
      middle of the first catch-up, and move every object alive now out of the cyclic garbage
      collector's sight (`gc.freeze`). A collector makes and drops millions of small records
      (trades, bars, rows); each full collection otherwise walks every object of Django, pandas and
      numba as well: about 150 ms a pass here, over a tenth of a catch-up's time. Frozen objects are
      never collected, which costs nothing: they live as long as the process.
    - Let the database thread have the GIL back sooner (`sys.setswitchinterval`). The store makes a
      few round trips per batch and needs the GIL again after each, while the event loop's thread,
      busy parsing, keeps it for up to the switch interval each time: at Python's 5 ms a batch of
      2,000 bars took tens of milliseconds, and the intake waited for the store 0.4 s of a 1 s
      benchmark round. At 0.5 ms it waits 0-0.13 s, for 7-10% more messages a second.
    """
    from indicators.compute import EngineMissing, pandas_ta_with_talib  # imported here: indicators builds on market

    with suppress(EngineMissing):  # its absence is reported where indicators are computed
        pandas_ta_with_talib()
    gc.collect()
    gc.freeze()
    sys.setswitchinterval(GIL_SWITCH_SECONDS)


def _store(rows: Sequence[BarRow]) -> None:
    # Published by the collector once this returns, i.e. after the commit.
    store_bars(rows, publish=False)


def _store_batch(rows: Sequence[BarRow], *, reconnect: bool = False) -> list[BarRow]:
    """Store a batch (in a worker thread); returns the bars the store refused as invalid. A batch
    with an invalid bar is all refused by the store, so then the bars go one by one.

    `reconnect` after a failed write: drop the connection the database may have closed. Not on
    every write, because with CONN_HEALTH_CHECKS that costs a `SELECT 1` each time, a round trip
    that every bar close would wait for.
    """
    if reconnect:
        close_old_connections()
    try:
        _store(rows)
    except InvalidBars:
        pass
    else:
        return []
    refused = []
    for row in rows:
        try:
            _store([row])
        except InvalidBars as exc:
            log.error("bar refused by the store: %s", exc)
            refused.append(row)
    return refused


@dataclass
class Collector:
    source: Source
    name: str = ""
    flush_bars: int = 500
    flush_seconds: float = 0.1
    partial_per_second: float = 4.0
    max_buffered: int = 100_000
    late_grace_ms: int = 0
    symbols_refresh_seconds: float = 0.0  # 0: the symbols are read once
    health_seconds: float = 0.0  # 0: no health rows
    reconcile_tolerance: float = 1e-9
    calendar: str | None = None
    shard: tuple[int, int] | None = None
    db_backoff: Backoff = field(default_factory=lambda: Backoff(base=0.5, cap=30.0))
    clock: Callable[[], float] = time.monotonic
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))  # wall clock, for market hours
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    stats: CollectorStats = field(default_factory=CollectorStats)
    tracked: dict[str, Tracked] = field(default_factory=dict)
    _pending: list[BarRow] = field(default_factory=list)
    _flush_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _flush_wanted: asyncio.Event = field(default_factory=asyncio.Event)
    _unpublished: list[BarRow] = field(default_factory=list)  # stored, in order, not yet published
    _publish_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _publish_wanted: asyncio.Event = field(default_factory=asyncio.Event)
    _db_retry_at: float | None = None
    _failures_seen: int = 0
    _idle: bool = False
    _clock_ms: int = -1
    _subscription: Subscription | None = None

    def __post_init__(self) -> None:
        self.name = self.name or self.source.name
        self.calendar = self.calendar if self.calendar is not None else self.source.calendar
        self.hours = MarketHours(self.calendar) if self.calendar else None
        self.started_at = datetime.now(UTC)
        self._reported_state: str | None = None
        self._health_mark = (self.clock(), 0)

    @property
    def instruments(self) -> dict[str, int]:
        return {symbol: tracked.instrument_id for symbol, tracked in self.tracked.items()}

    # --- running ---------------------------------------------------------------------------------

    async def run(self) -> CollectorStats:
        instruments = await self._load_instruments()
        if not instruments and not self.symbols_refresh_seconds:
            log.warning("no active instruments on %s: nothing to collect", self.source.exchange)
            return self.stats
        resume = await sync_to_async(resume_points)(instruments)
        for symbol, instrument_id in instruments.items():
            self._track(symbol, instrument_id)
        self._subscription = Subscription(resume)
        log.info("collecting %s for %s", self.source.name, ", ".join(sorted(instruments)) or "no instruments yet")
        helpers = [
            self._flush_periodically(),
            self._publish_stored_continuously(),
            self._publish_partials_periodically(),
        ]
        if self.symbols_refresh_seconds:
            helpers.append(self._follow_instruments())
        if self.health_seconds:
            helpers.append(self._report_health_periodically())
        tasks = [asyncio.create_task(helper) for helper in helpers]
        try:
            await self._supervise()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.shutdown()
        return self.stats

    async def _supervise(self) -> None:
        """Stream while the market is open (always, without a calendar); idle in between."""
        while True:
            session_end: datetime | None = None
            if self.hours is not None:
                session = self.hours.state(self.now())
                if not session.open:
                    await self._idle_until(session.next_change)
                    continue
                session_end = session.next_change
            self._idle = False
            timeout = None if session_end is None else max(0.0, (session_end - self.now()).total_seconds())
            try:
                async with asyncio.timeout(timeout) as deadline:
                    await self._consume()
            except TimeoutError:
                if not deadline.expired():
                    raise
                log.info("%s: the session closed at %s", self.name, session_end)
                assert session_end is not None
                self._on_clock(int(session_end.timestamp() * 1000))
                self._flush_wanted.set()
                continue
            return  # a finite source (a recording) has ended

    async def _consume(self) -> None:
        assert self._subscription is not None
        stats = self.stats
        tracked_by_symbol = self.tracked  # changed in place when instruments come and go
        async with aclosing(self.source.stream(self._subscription)) as events:
            async for event in events:
                if type(event) is TradeEvent:
                    # The hot path, inlined: no method call, no coroutine per trade.
                    tracked = tracked_by_symbol.get(event.symbol)
                    if tracked is None:
                        stats.unknown_symbol += 1
                        continue
                    stats.trades += 1
                    closed = tracked.builder.add(event.trade)
                    tracked.dirty = True
                    if closed:
                        self._closed(tracked, closed)
                        if len(self._pending) >= self.flush_bars and self._must_make_room():
                            await self._make_room()
                elif type(event) is ClockEvent:
                    # Also without a coroutine: once a minute live, but a bar per few trades in a replay.
                    self._on_clock_event(event)
                elif type(event) is TradeBatch:
                    self._on_trade_batch(event)
                    if len(self._pending) >= self.flush_bars and self._must_make_room():
                        await self._make_room()
                else:
                    await self._on_event(event)

    async def _idle_until(self, until: datetime) -> None:
        self._idle = True
        log.info("%s: market closed; idle until %s", self.name, until)
        while (remaining := (until - self.now()).total_seconds()) > 0:
            await self.sleep(min(remaining, 60.0))

    async def _on_event(self, event: SourceEvent) -> None:
        """Every event but trades and clock events (`_consume` handles those itself)."""
        self.stats.other_events += 1
        kind = type(event)
        if kind is BarEvent:
            self._on_bar(event)  # type: ignore[arg-type]
        elif kind is KlineEvent:
            self._on_kline(event)  # type: ignore[arg-type]
        elif kind is GapEvent:
            await self._on_gap(event)  # type: ignore[arg-type]

    def _on_clock_event(self, event: ClockEvent) -> None:
        self.stats.other_events += 1
        self._on_clock(event.time_ms)
        if self._pending:
            # A minute boundary closes every instrument's bar at once: write and publish them now.
            self._flush_wanted.set()

    def _on_trade_batch(self, batch: TradeBatch) -> None:
        """The trades of a run and the clock events between them (a catch-up, a replay), as if they
        had come one by one: the run's builder sees each clock at its place among the trades, the
        other instruments (which had no trade in between) the last one."""
        run = batch.run
        tracked = self.tracked.get(batch.symbol)
        if tracked is None:
            self.stats.unknown_symbol += len(run)
        else:
            self.stats.trades += len(run)
            closed = tracked.builder.add_run(run)
            tracked.dirty = True
            if closed:
                self._closed(tracked, closed)
        if run.clocks:
            self.stats.other_events += len(run.clocks)
            self._on_clock(run.clocks[-1][1], seen_by=tracked)
            if self._pending:
                self._flush_wanted.set()

    def _closed(self, tracked: Tracked, bars: list[MinuteBar]) -> None:
        for bar in bars:
            self._pending.append(to_row(tracked.instrument_id, bar, final=True))
            recent = tracked.recent
            recent[bar.time_ms] = bar
            if len(recent) > 2 * RECENT_MINUTES:  # prune now and then, not at every bar
                horizon = bar.time_ms - RECENT_MINUTES * MINUTE_MS
                for minute in [minute for minute in recent if minute < horizon]:
                    del recent[minute]

    def _on_clock(self, now_ms: int, *, seen_by: Tracked | None = None) -> None:
        """The source's clock reached `now_ms`: close the bars that ended before it (but those of
        `seen_by`, whose builder saw this clock already, among the trades of a run)."""
        if now_ms > self._clock_ms:
            self._clock_ms = now_ms
        for tracked in self.tracked.values():
            if tracked is not seen_by:
                closed = tracked.builder.close_until(now_ms)
                if closed:
                    self._closed(tracked, closed)
            if tracked.klines:
                self._reconcile_due(tracked)

    def _on_bar(self, event: BarEvent) -> None:
        tracked = self.tracked.get(event.symbol)
        if tracked is None:
            self.stats.unknown_symbol += 1
            return
        self.stats.source_bars += 1
        if event.final:
            self._pending.append(to_row(tracked.instrument_id, event.bar, final=True))
            self._flush_wanted.set()
            if tracked.partial is not None and tracked.partial.time_ms <= event.bar.time_ms:
                tracked.partial = None
        else:
            tracked.partial = event.bar
            tracked.dirty = True

    def _on_kline(self, event: KlineEvent) -> None:
        self.stats.klines += 1
        tracked = self.tracked.get(event.symbol)
        if tracked is not None and event.bar.closed:
            tracked.klines.append(event.bar)
            # Usually the grace period is still running and the next clock event checks it; a kline
            # that arrives after it (grace 0, a catch-up) is checked now, not a minute later.
            self._reconcile_due(tracked)

    def _reconcile_due(self, tracked: Tracked) -> None:
        """Check the exchange's closed bars whose late-trade grace period is over."""
        due = [k for k in tracked.klines if self._clock_ms >= k.time_ms + MINUTE_MS + self.late_grace_ms]
        if not due:
            return
        tracked.klines = [k for k in tracked.klines if k not in due]
        for kline in due:
            result = reconcile(tracked.recent.get(kline.time_ms), kline, tolerance=self.reconcile_tolerance)
            self.stats.reconciled[result.verdict] += 1
            if result.verdict in (Verdict.MISMATCH, Verdict.MISSING):
                log.warning(
                    "%s %s: our bar differs from the exchange's beyond rounding (%s): %s",
                    tracked.symbol,
                    utc_from_ms(kline.time_ms),
                    result.verdict,
                    "; ".join(result.differences),
                )

    async def _on_gap(self, event: GapEvent) -> None:
        tracked = self.tracked.get(event.symbol)
        if tracked is None:
            return
        self.stats.gaps += 1
        log.warning(
            "%s: trades %s..%s missing (%s)",
            event.symbol,
            utc_from_ms(event.start_ms),
            utc_from_ms(event.end_ms),
            event.reason,
        )
        try:
            await sync_to_async(backfill_gap)(tracked.instrument_id, event.start_ms, event.end_ms)
        except Exception:  # the history side failing must not stop the live one
            log.exception("%s: could not ask for a backfill of the gap", event.symbol)
            return
        self.stats.gaps_backfill_requested += 1

    # --- symbols ---------------------------------------------------------------------------------

    def _track(self, symbol: str, instrument_id: int) -> Tracked:
        tracked = Tracked(symbol, instrument_id, BarBuilder(grace_ms=self.late_grace_ms))
        self.tracked[symbol] = tracked
        return tracked

    async def _load_instruments(self) -> dict[str, int]:
        return await sync_to_async(load_instruments)(self.source.exchange, self.source.asset_classes, self.shard)

    async def _follow_instruments(self) -> None:
        while True:
            await self.sleep(self.symbols_refresh_seconds)
            try:
                await self.refresh_instruments()
            except DatabaseError as exc:
                log.warning("%s: could not re-read the instruments: %s", self.name, exc)

    async def refresh_instruments(self) -> None:
        """Start collecting instruments activated since the last look, stop those deactivated."""
        current = await self._load_instruments()
        added = {s: i for s, i in current.items() if self.tracked.get(s) is None or self.tracked[s].instrument_id != i}
        removed = [s for s in self.tracked if s not in current]
        if not added and not removed:
            return
        for symbol in removed:
            tracked = self.tracked.pop(symbol)
            if tracked.builder.current is not None:
                self._pending.append(to_row(tracked.instrument_id, tracked.builder.current, final=False))
        resume = await sync_to_async(resume_points)(added)
        for symbol, instrument_id in added.items():
            self._track(symbol, instrument_id)
        assert self._subscription is not None
        symbols = {symbol: self._subscription.get(symbol) for symbol in self.tracked}
        symbols.update(resume)
        self._subscription.update(symbols)
        log.info(
            "%s: now collecting %s (added %s, removed %s)", self.name, len(symbols), sorted(added), sorted(removed)
        )

    # --- storing and publishing ------------------------------------------------------------------

    def _must_make_room(self) -> bool:
        """A batch is due: wake the flusher; whether intake must also wait (`_make_room`). Asked at
        every bar closed while a batch is due, so without a coroutine unless there is waiting to do."""
        self._flush_wanted.set()
        return self._storing_lags() or self._publishing_lags()

    def _storing_lags(self) -> bool:
        return len(self._pending) >= 4 * self.flush_bars and self._db_retry_at is None

    def _publishing_lags(self) -> bool:
        return len(self._unpublished) >= 4 * self.flush_bars

    async def _make_room(self) -> None:
        """Backpressure: with the database up, let the flusher catch up before taking more trades."""
        if self._storing_lags():
            await self.flush()
        if self._publishing_lags():
            # Publishing (the live indicators, mostly) lags behind storing: wait for it rather than
            # let stored bars and their encoded messages pile up in memory during a catch-up.
            await self.publish_stored()

    async def _flush_periodically(self) -> None:
        while True:
            with suppress(TimeoutError):
                async with asyncio.timeout(self.flush_seconds):
                    await self._flush_wanted.wait()
            self._flush_wanted.clear()
            await self.flush()

    async def flush(self, *, force: bool = False) -> None:
        async with self._flush_lock:
            if not self._pending:
                return
            if not force and self._db_retry_at is not None and self.clock() < self._db_retry_at:
                return  # the database was down a moment ago: wait for the backoff, do not spin
            rows, self._pending = self._pending, []
            reconnect = self.stats.store_failures > self._failures_seen
            self._failures_seen = self.stats.store_failures
            store = asyncio.ensure_future(sync_to_async(_store_batch)(rows, reconnect=reconnect))
            try:
                await asyncio.wait([store])  # unlike awaiting it, cancelling this does not cancel the store
            except asyncio.CancelledError:
                # Stopping (SIGTERM) while the worker thread writes: it finishes anyway, so wait for
                # it and count (or keep) its bars rather than lose track of them.
                await asyncio.wait([store])
                self._queue_publish(self._stored(rows, store))
                raise
            # Still under the lock: the next batch's bars must not overtake these on their way out.
            self._queue_publish(self._stored(rows, store))

    def _stored(self, rows: list[BarRow], store: asyncio.Future[list[BarRow]]) -> list[BarRow]:
        """The bars a finished store wrote; on a database error they go back to the buffer."""
        error = store.exception()
        if error is not None:
            if not isinstance(error, DatabaseError | InterfaceError):
                log.error("unexpected error storing bars", exc_info=error)
            self._store_failed(rows, error)  # kept, and retried after the backoff
            return []
        refused = store.result()
        if refused:
            self.stats.rejected_bars += len(refused)
            rows = [row for row in rows if row not in refused]
        self._db_retry_at = None
        self.db_backoff.reset()
        self.stats.bars_stored += len(rows)
        return rows

    def _store_failed(self, rows: list[BarRow], exc: BaseException) -> None:
        self.stats.store_failures += 1
        self._pending = rows + self._pending
        delay = self.db_backoff.next_delay()
        self._db_retry_at = self.clock() + delay
        log.error("could not store %d bars (kept, retry in %.1f s): %s", len(self._pending), delay, exc)
        excess = len(self._pending) - self.max_buffered
        if excess > 0:
            self.stats.dropped_bars += excess
            log.error("bar buffer full (%d): dropped the %d oldest bars", self.max_buffered, excess)
            del self._pending[:excess]

    def _queue_publish(self, rows: list[BarRow]) -> None:
        """Stored bars go to the publisher: the flusher goes on storing while Redis is asked, and the
        publisher takes what piled up meanwhile as one batch."""
        if rows:
            self._unpublished.extend(rows)
            self._publish_wanted.set()

    async def _publish_stored_continuously(self) -> None:
        while True:
            await self._publish_wanted.wait()
            self._publish_wanted.clear()
            await self.publish_stored()

    async def publish_stored(self) -> None:
        """Publish the stored bars not published yet, in the order they were stored."""
        async with self._publish_lock:
            while self._unpublished:
                # In rounds of a bounded size: a round's messages are all in memory at once.
                rows = self._unpublished[: 4 * self.flush_bars]
                del self._unpublished[: len(rows)]
                sending = asyncio.ensure_future(self._publish(rows))
                try:
                    await asyncio.wait([sending])  # as with the store: cancelling this does not cancel the sends
                except asyncio.CancelledError:
                    # Stopping: let the round on its way finish, or some of its series would have been
                    # sent and others not, with no telling which; what is still queued is published
                    # by shutdown.
                    await asyncio.wait([sending])
                    raise

    async def _publish(self, rows: Sequence[BarRow]) -> None:
        try:
            series = {(row.instrument_id, row.timeframe) for row in rows}  # a group name per series, not per bar
            listened = await listened_groups({bars_group(*key) for key in series})
            self.stats.finals_published += await apublish_stored_bars(rows, listened)
        except Exception:  # a channel layer outage must not lose stored bars or stop collecting
            log.exception("could not publish %d final bars", len(rows))

    async def _publish_partials_periodically(self) -> None:
        period = 1.0 / self.partial_per_second if self.partial_per_second > 0 else None
        while period is not None:
            await self.sleep(period)
            await self.publish_partials()

    async def publish_partials(self) -> None:
        published = []
        for tracked in list(self.tracked.values()):
            if not tracked.dirty:
                continue
            tracked.dirty = False
            bar = tracked.builder.current or tracked.partial
            if bar is None:
                continue
            row = to_row(tracked.instrument_id, bar, final=False)
            try:
                await apublish_bar(row)
            except Exception:
                log.exception("could not publish a partial bar of %s", tracked.symbol)
                break
            published.append(row)
            self.stats.partials_published += 1
        if published:
            await aschedule_intrabar_alerts(published)

    async def shutdown(self) -> None:
        """Store what is pending; bars still open are stored as non-final so nothing is lost."""
        for tracked in self.tracked.values():
            if tracked.builder.current is not None:
                self._pending.append(to_row(tracked.instrument_id, tracked.builder.current, final=False))
        await self.flush(force=True)
        await self.publish_stored()
        if self._pending:
            log.error(
                "%s: stopped with %d bars not stored (the database is unreachable)", self.name, len(self._pending)
            )
        if self.health_seconds:
            await self.report_health(state="stopped")

    # --- health ----------------------------------------------------------------------------------

    async def _report_health_periodically(self) -> None:
        while True:
            await self.report_health()
            await self.sleep(self.health_seconds)

    def health_snapshot(self, state: str | None = None) -> HealthSnapshot:
        health = self.source.health
        now = self.clock()
        then, messages_then = self._health_mark
        rate = (health.messages - messages_then) / (now - then) if now > then else 0.0
        self._health_mark = (now, health.messages)
        rejected: Counter[str] = Counter(health.rejected)
        counters: dict[str, Any] = {"corrections": 0, "events": self.stats.events}
        for tracked in self.tracked.values():
            stats = tracked.builder.stats
            rejected["duplicate trade"] += stats.duplicates
            rejected["late trade"] += stats.late
            rejected["invalid trade"] += stats.invalid
            counters["corrections"] += stats.corrections
        rejected["unknown symbol"] += self.stats.unknown_symbol
        rejected["bar refused by the store"] += self.stats.rejected_bars
        counters.update(
            klines=self.stats.klines,
            reconciled=dict(self.stats.reconciled),
            gaps=self.stats.gaps,
            gaps_backfill_requested=self.stats.gaps_backfill_requested,
            dropped_bars=self.stats.dropped_bars,
            store_failures=self.stats.store_failures,
            partials_published=self.stats.partials_published,
            # Which instruments this collector covers: collector-down alert rules read it.
            instruments=sorted(tracked.instrument_id for tracked in self.tracked.values()),
        )
        last = health.last_message_at
        return HealthSnapshot(
            name=self.name,
            source=self.source.name,
            state=state or state_for(health.state, idle=self._idle),
            breaker_state=str(health.breaker.state(self.clock())),
            last_message_at=None if last is None else datetime.fromtimestamp(last, UTC),
            messages_per_second=round(rate, 1),
            messages=health.messages,
            trades=self.stats.trades,
            bars_stored=self.stats.bars_stored,
            buffered_bars=len(self._pending),
            reconnects=health.reconnects,
            rejected_reasons={reason: count for reason, count in rejected.items() if count},
            counters=counters,
            symbols=len(self.tracked),
            last_error=health.last_error,
            started_at=self.started_at,
        )

    async def report_health(self, state: str | None = None) -> None:
        snapshot = self.health_snapshot(state)
        if not await sync_to_async(try_save_health)(snapshot):
            log.warning("%s: could not store the collector's health (database unreachable)", self.name)
        previous = self._reported_state
        if snapshot.state != previous:
            # Live status pages learn of a change at once instead of polling /api/v1/collectors/.
            self._reported_state = snapshot.state
            try:
                await apublish_collector_state(snapshot, previous)
            except Exception:
                log.warning("%s: could not broadcast the collector's state", self.name, exc_info=True)

"""The incremental roll-up of 1m bars into 5m, 15m, 1h, 4h and 1d, in SQL. See docs/scheduled.md.

A run claims the changed 1m spans that the bar table's triggers queued (`PendingRollup`), rebuilds
exactly the higher-timeframe buckets holding them, one cascade step at a time (`rollup_plan`), and
closes the buckets whose period has ended. Bars inserted or changed near the live edge are published
to the same Channels groups the collectors use, after the transaction commits.

Idempotent: a run with nothing queued changes nothing, and rebuilding a bucket from unchanged
source bars writes nothing (`IS DISTINCT FROM`). Concurrent runs do not step on each other: on
PostgreSQL a second run finds the advisory lock taken and returns at once; SQLite serializes
writers anyway. The roll-up reads no clock: `now` is passed in (by the task, the command and the
embedded loop).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection, transaction
from django.utils import timezone

from market import rollup_sql as sql
from market.barstore import BarRow
from market.models import AssetClass, Instrument
from market.rollup_plan import (
    ROLLED_UP_TIMEFRAMES,
    ROLLUP_STEPS,
    SESSION_TIMEFRAME,
    SessionBucket,
    Span,
    bucket_spans,
    changed_spans,
    is_live,
    session_buckets,
    session_source,
)
from market.services import bars_changed, publish_bars_to_listeners
from market.sessions import sessions_between
from market.timeframes import BASE_TIMEFRAME, TIMEFRAMES, parse_timeframe

log = logging.getLogger(__name__)

# Instruments whose daily bar follows the exchange session rather than the UTC day.
SESSION_ASSET_CLASSES = (AssetClass.STOCK, AssetClass.INDEX)
# Arbitrary but fixed: the key of the PostgreSQL advisory lock held by a running roll-up.
ROLLUP_LOCK_KEY = 0x726F6C6C7570
DEFAULT_BATCH = 10_000


@dataclass
class RollupResult:
    claimed: int = 0
    written: Counter[str] = field(default_factory=Counter)
    finalized: Counter[str] = field(default_factory=Counter)
    published: int = 0
    busy: bool = False

    def add(self, other: RollupResult) -> None:
        self.claimed += other.claimed
        self.written.update(other.written)
        self.finalized.update(other.finalized)
        self.published += other.published
        self.busy = self.busy or other.busy

    def __str__(self) -> str:
        if self.busy:
            return "another roll-up is running; skipped"
        written = ", ".join(f"{tf} {self.written[tf]}" for tf in ROLLED_UP_TIMEFRAMES if self.written[tf]) or "none"
        closed = sum(self.finalized.values())
        return f"{self.claimed} changed span(s); bars written: {written}; {closed} closed; {self.published} published"


def roll_up(now: datetime, *, batch: int = DEFAULT_BATCH, publish: bool = True) -> RollupResult:
    """Roll up everything queued, `batch` pending rows per transaction, then close ended buckets."""
    total = RollupResult()
    while True:
        result = _roll_up_batch(now, batch, publish)
        total.add(result)
        if result.busy or result.claimed < batch:
            break
    log.info("roll-up: %s", total)
    return total


async def roll_up_periodically(interval: float = 60.0) -> None:
    """Roll up every `interval` seconds in this process, until cancelled.

    For the embedded setup, which has no Celery beat: with the in-process channel layer only the
    web server's own process reaches the browsers, so `serve` runs this beside its collector.
    """
    while True:
        await asyncio.sleep(interval)
        try:
            await sync_to_async(_roll_up_now, thread_sensitive=True)()
        except DatabaseError:
            log.exception("roll-up failed; trying again in %.0f s", interval)


def _roll_up_now() -> RollupResult:
    close_old_connections()
    return roll_up(timezone.now())


def queue_full_rollup(instrument_ids: Sequence[int] | None = None) -> int:
    """Queue every stored 1m bar (of these instruments) for the next roll-up: a rebuild from scratch.

    Cheap and idempotent to run twice: the rebuild rewrites only buckets whose values differ.
    """
    where = "" if instrument_ids is None else "AND instrument_id = ANY(%(ids)s)"
    if connection.vendor == "sqlite":
        group = 'date("time")'
        where = where.replace("= ANY(%(ids)s)", "IN (SELECT value FROM json_each(%(ids_json)s))")
    else:
        group = "floor(date_part('epoch', \"time\") / 86400)"
    query = f"""
        INSERT INTO market_pendingrollup (instrument_id, first_time, last_time)
        SELECT instrument_id, min("time"), max("time") FROM market_bar
        WHERE timeframe = %(base)s {where}
        GROUP BY instrument_id, {group}
    """
    params: dict[str, Any] = {
        "base": BASE_TIMEFRAME,
        "ids": list(instrument_ids or []),
        "ids_json": json.dumps(instrument_ids),
    }
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        return cursor.rowcount


def _roll_up_batch(now: datetime, batch: int, publish: bool) -> RollupResult:
    """One transaction: claim and rebuild up to `batch` pending spans; the last one also closes the
    buckets whose period has ended."""
    result = RollupResult()
    with transaction.atomic():
        if not _try_lock():
            result.busy = True
            return result
        if connection.vendor == "postgresql":
            result.claimed = _claim_into_session_table(batch)
            changed = _claimed_instruments() if result.claimed else set()
            live = _rebuild_claimed(now, publish, result) if result.claimed else []
        else:
            pending = _claim(batch)
            result.claimed = len(pending)
            changed = {span[0] for span in pending}
            live = _rebuild(pending, now, publish, result) if pending else []
        if result.claimed < batch:
            finalized = _finalize(now, result)
            changed.update(row.instrument_id for row in finalized)
            live += finalized
        bars_changed(changed)
        if publish:
            result.published = _publish_after_commit(live, now)
    return result


def _rebuild_claimed(now: datetime, publish: bool, result: RollupResult) -> list[BarRow]:
    """PostgreSQL: rebuild every bucket holding a claimed span, one statement per cascade step for
    all instruments at once, the spans planned in SQL; returns the changed live bars."""
    session_spans = changed_spans(_claimed_session_spans())
    session_ids = sorted({span.instrument_id for span in session_spans})
    _tune_transaction()
    live: list[BarRow] = []
    for target, source in ROLLUP_STEPS:
        params = {
            "target": target,
            "source": source,
            "step": parse_timeframe(target),
            "now": now,
            "excluded": session_ids if target == SESSION_TIMEFRAME else [],
        }
        written, rows = _execute(sql.POSTGRES_UTC, params, now, publish)
        result.written[target] += written
        live.extend(rows)
    written, rows = _upsert_sessions(session_spans, now, publish)
    result.written[SESSION_TIMEFRAME] += written
    live.extend(rows)
    return live


def _rebuild(
    pending: list[tuple[int, datetime, datetime]], now: datetime, publish: bool, result: RollupResult
) -> list[BarRow]:
    """SQLite: rebuild every bucket holding a pending span, step by step; returns the changed live bars."""
    spans = changed_spans(pending)
    session_ids = _session_instruments({span.instrument_id for span in spans})
    live: list[BarRow] = []
    for target, source in ROLLUP_STEPS:
        step_spans = spans
        if target == SESSION_TIMEFRAME:
            step_spans = [span for span in spans if span.instrument_id not in session_ids]
        written, rows = _upsert_utc_sqlite(bucket_spans(step_spans, target), target, source, now, publish)
        result.written[target] += written
        live.extend(rows)
    written, rows = _upsert_sessions([span for span in spans if span.instrument_id in session_ids], now, publish)
    result.written[SESSION_TIMEFRAME] += written
    live.extend(rows)
    return live


def _finalize(now: datetime, result: RollupResult) -> list[BarRow]:
    """Close the rolled-up bars whose period has ended (some got no source bar at its end)."""
    closed: list[BarRow] = []
    with connection.cursor() as cursor:
        for timeframe in ROLLED_UP_TIMEFRAMES:
            cutoff = now - parse_timeframe(timeframe)
            cursor.execute(sql.FINALIZE, {"timeframe": timeframe, "cutoff": _param(cutoff)})
            rows = _bar_rows(cursor.fetchall())
            result.finalized[timeframe] += len(rows)
            closed.extend(rows)
    return closed


def _try_lock() -> bool:
    if connection.vendor != "postgresql":
        return True
    with connection.cursor() as cursor:
        cursor.execute(sql.POSTGRES_TRY_LOCK, {"key": ROLLUP_LOCK_KEY})
        return bool(cursor.fetchone()[0])


def _claim(limit: int) -> list[tuple[int, datetime, datetime]]:
    with connection.cursor() as cursor:
        cursor.execute(sql.CLAIM_PENDING, {"limit": limit})
        return [(instrument_id, _datetime(first), _datetime(last)) for instrument_id, first, last in cursor.fetchall()]


def _claim_into_session_table(limit: int) -> int:
    """PostgreSQL: move up to `limit` pending spans into this session's claim table; how many."""
    with connection.cursor() as cursor:
        cursor.execute(sql.CREATE_CLAIM_TABLE)
        # Emptied at commit, but a run inside a caller's transaction (a test, a command in an atomic
        # block) may follow another without one.
        cursor.execute("DELETE FROM rollup_claimed_spans")
        cursor.execute(sql.CLAIM_PENDING_POSTGRES, {"limit": limit})
        return cursor.rowcount


def _claimed_instruments() -> set[int]:
    """The instruments of the claimed spans: their cached API responses go stale with this run."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT DISTINCT instrument_id FROM rollup_claimed_spans")
        return {instrument_id for (instrument_id,) in cursor.fetchall()}


def _claimed_session_spans() -> list[tuple[int, datetime, datetime]]:
    with connection.cursor() as cursor:
        cursor.execute(sql.CLAIMED_SESSION_SPANS, {"asset_classes": [str(c) for c in SESSION_ASSET_CLASSES]})
        return cursor.fetchall()


def _session_instruments(instrument_ids: set[int]) -> set[int]:
    # Asking for the (few) exchange-traded instruments beats sending thousands of ids along.
    stocks = Instrument.objects.filter(asset_class__in=SESSION_ASSET_CLASSES).values_list("pk", flat=True)
    return instrument_ids.intersection(stocks)


def _tune_transaction() -> None:
    """PostgreSQL settings for this roll-up transaction only.

    No waiting for the WAL flush at commit: if the server crashed right after, the whole transaction
    would be lost at once, the claimed spans included, and the next run would redo it identically.
    Room to hash a big backlog's buckets in memory (a million 1m bars are 200,000 5m buckets; with
    the default work_mem they spill to disk, 30% slower); a small run never uses it.
    """
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL synchronous_commit = off")
        cursor.execute("SET LOCAL work_mem = '256MB'")


def _upsert_utc_sqlite(
    spans: list[Span], target: str, source: str, now: datetime, publish: bool = True
) -> tuple[int, list[BarRow]]:
    """Rebuild the `target` buckets of `spans` from `source` bars: (bars changed, the live ones)."""
    if not spans:
        return 0, []
    params: dict[str, Any] = {
        "target": target,
        "source": source,
        "now": _param(now),
        "spans": json.dumps([[span.instrument_id, _param(span.start), _param(span.end)] for span in spans]),
        "step": int(parse_timeframe(target).total_seconds()),
    }
    return _execute(sql.SQLITE_UTC, params, now, publish)


def _upsert_sessions(spans: list[Span], now: datetime, publish: bool = True) -> tuple[int, list[BarRow]]:
    if not spans:
        return 0, []
    calendar = settings.SESSION_CALENDAR
    buckets = session_buckets(spans, lambda start, end: sessions_between(calendar, start, end))
    if not buckets:
        return 0, []
    params: dict[str, Any] = {
        "target": SESSION_TIMEFRAME,
        "source": session_source(buckets),
        "now": _param(now),
    }
    if connection.vendor == "postgresql":
        query = sql.POSTGRES_SESSIONS
        params |= {
            "ids": [bucket.instrument_id for bucket in buckets],
            "labels": [bucket.label for bucket in buckets],
            "starts": [bucket.open for bucket in buckets],
            "ends": [bucket.close for bucket in buckets],
        }
    else:
        query = sql.SQLITE_SESSIONS
        params["spans"] = json.dumps([_session_json(bucket) for bucket in buckets])
    return _execute(query, params, now, publish)


def _session_json(bucket: SessionBucket) -> list[Any]:
    return [bucket.instrument_id, _param(bucket.open), _param(bucket.close), _param(bucket.label)]


def _execute(query: str, params: dict[str, Any], now: datetime, publish: bool) -> tuple[int, list[BarRow]]:
    """Run an upsert: (bars changed, the changed bars near the live edge if they are to be published)."""
    step = parse_timeframe(params["target"])
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Without publishing nothing needs to come back but the count.
            params["live_after"] = now - 2 * step if publish else datetime.max.replace(tzinfo=UTC)
            cursor.execute(query, params)
            count, live = cursor.fetchone()
            return count, _bar_rows(live)
        cursor.execute(query, params)
        rows = _bar_rows(cursor.fetchall())
    return len(rows), [row for row in rows if publish and is_live(row.time, row.timeframe, now)]


def _publish_after_commit(rows: list[BarRow], now: datetime) -> int:
    """Hand the changed live bars to the alert rules and to the clients watching them, after commit;
    returns how many. Only the groups somebody listens to get a broadcast: a minute's run changes five
    bars per active instrument, and few of those feeds are open in a browser at any time."""
    live = [row for row in rows if is_live(row.time, row.timeframe, now)]
    if live:
        transaction.on_commit(lambda: publish_bars_to_listeners(live))
    return len(live)


def _bar_rows(rows: Sequence[tuple[Any, ...]]) -> list[BarRow]:
    return [
        BarRow(instrument_id, timeframe, _datetime(time), o, h, low, c, v, n, vw, bool(final))
        for instrument_id, timeframe, time, o, h, low, c, v, n, vw, final in rows
    ]


def _param(moment: datetime) -> datetime | str:
    """A datetime as the connection wants it in raw SQL (SQLite: Django's UTC text format)."""
    if connection.vendor == "sqlite":
        return str(connection.ops.adapt_datetimefield_value(moment))
    return moment


def _datetime(value: datetime | str) -> datetime:
    """A datetime read by raw SQL as an aware one (SQLite returns naive UTC, or text for computed values)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


assert set(ROLLED_UP_TIMEFRAMES) | {BASE_TIMEFRAME} == set(TIMEFRAMES), "every timeframe is rolled up or the base"

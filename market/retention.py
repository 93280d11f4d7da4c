"""Retention: bars older than their timeframe's horizon are deleted, in small batches. See docs/scheduled.md.

The policy (settings.BAR_RETENTION_DAYS, e.g. {"1m": 90}) gives days kept per timeframe; a
timeframe not listed is kept forever, which is the default for everything above 1m: the roll-up
builds the higher timeframes before the minutes go, and keeps them.

Deletes go one instrument, timeframe and batch at a time, each batch its own short transaction found
through the (instrument, timeframe, time) index: no long lock, no table scan, and the collector's
writes interleave. An instrument whose 1m bars older than the horizon still wait for the roll-up is
skipped until they are rolled up, so a fresh backfill of old history is never deleted unrolled.

TimescaleDB: one hypertable holds every timeframe, so a `drop_chunks` retention policy would drop
the hourly and daily bars with the minutes. With the extension, the same batched deletes run and a
compression policy compresses chunks once they are past the longest finite horizon (so the deletes
never touch compressed chunks).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction

from market.models import Bar, Instrument, PendingRollup
from market.services import bars_changed
from market.timeframes import TIMEFRAMES

log = logging.getLogger(__name__)

# Chunks are compressed this long after the longest finite horizon has passed them.
COMPRESSION_MARGIN = timedelta(days=7)
COMPRESS_WITHOUT_RETENTION = timedelta(days=30)

DELETE_BATCH = """
DELETE FROM market_bar
WHERE instrument_id = %(instrument)s AND timeframe = %(timeframe)s AND "time" IN (
    SELECT "time" FROM market_bar
    WHERE instrument_id = %(instrument)s AND timeframe = %(timeframe)s AND "time" < %(cutoff)s
    ORDER BY "time" LIMIT %(batch)s
)
"""


def retention_cutoffs(policy: Mapping[str, int], now: datetime) -> dict[str, datetime]:
    """Per timeframe with a finite horizon, the time before which bars are deleted. Pure."""
    unknown = set(policy) - set(TIMEFRAMES)
    if unknown:
        raise ValueError(f"unknown timeframe(s) in the retention policy: {', '.join(sorted(unknown))}")
    if any(days < 1 for days in policy.values()):
        raise ValueError("retention must be at least one day")
    return {timeframe: now - timedelta(days=days) for timeframe, days in policy.items()}


@dataclass
class RetentionResult:
    deleted: Counter[str] = field(default_factory=Counter)
    skipped: list[int] = field(default_factory=list)
    compression_policy: bool = False

    def __str__(self) -> str:
        deleted = ", ".join(f"{tf} {count}" for tf, count in self.deleted.items() if count) or "nothing"
        skipped = f"; {len(self.skipped)} instrument(s) wait for the roll-up" if self.skipped else ""
        return f"deleted {deleted}{skipped}"


def enforce_retention(now: datetime, policy: Mapping[str, int], *, batch: int = 10_000) -> RetentionResult:
    """Delete every bar older than its timeframe's horizon; idempotent."""
    result = RetentionResult()
    cutoffs = retention_cutoffs(policy, now)
    for instrument_id in Instrument.objects.order_by("pk").values_list("pk", flat=True):
        earliest_pending = _earliest_pending(instrument_id)
        for timeframe, cutoff in cutoffs.items():
            if earliest_pending is not None and earliest_pending < cutoff:
                result.skipped.append(instrument_id)
                break
            result.deleted[timeframe] += _delete_older(instrument_id, timeframe, cutoff, batch)
    if timescale_hypertable():
        result.compression_policy = ensure_compression_policy(_compress_after(policy))
    log.info("retention: %s", result)
    return result


def _earliest_pending(instrument_id: int) -> datetime | None:
    pending = PendingRollup.objects.filter(instrument_id=instrument_id).order_by("first_time").first()
    return None if pending is None else pending.first_time


def _delete_older(instrument_id: int, timeframe: str, cutoff: datetime, batch: int) -> int:
    deleted = 0
    # Without an older bar there is nothing to do: one index probe instead of a DELETE.
    if not Bar.objects.filter(instrument_id=instrument_id, timeframe=timeframe, time__lt=cutoff).exists():
        return 0
    # Raw SQL gets the datetime in the form the backend stores it (SQLite: Django's UTC text).
    stored_cutoff = connection.ops.adapt_datetimefield_value(cutoff)
    params: dict[str, Any] = {
        "instrument": instrument_id,
        "timeframe": timeframe,
        "cutoff": stored_cutoff,
        "batch": batch,
    }
    while True:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(DELETE_BATCH, params)
                count = cursor.rowcount
            if count:
                bars_changed([instrument_id])
        deleted += count
        if count < batch:
            return deleted


def _compress_after(policy: Mapping[str, int]) -> timedelta:
    if not policy:
        return COMPRESS_WITHOUT_RETENTION
    return timedelta(days=max(policy.values())) + COMPRESSION_MARGIN


def timescale_hypertable() -> bool:
    """Whether market_bar is a TimescaleDB hypertable (migration 0002 makes it one where it can)."""
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
        if cursor.fetchone() is None:
            return False
        cursor.execute("SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_name = 'market_bar'")
        return cursor.fetchone() is not None


def ensure_compression_policy(compress_after: timedelta) -> bool:
    """Enable compression on the bar hypertable and schedule it; idempotent. Needs TimescaleDB."""
    with connection.cursor() as cursor:
        cursor.execute(
            "ALTER TABLE market_bar SET (timescaledb.compress,"
            " timescaledb.compress_segmentby = 'instrument_id, timeframe', timescaledb.compress_orderby = 'time')"
        )
        cursor.execute(
            "SELECT add_compression_policy('market_bar', compress_after => %s::interval, if_not_exists => true)",
            [f"{int(compress_after.total_seconds())} seconds"],
        )
    return True

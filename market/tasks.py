"""Celery tasks of the market app: thin, take ids and ISO times, call domain code, return a summary
(kept by django-celery-results, shown in the admin). Every one is safe to run twice.

The beat schedule that runs them is declared in settings.CELERY_BEAT_SCHEDULE (see docs/scheduled.md).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from market.arbitrage_services import detect_arbitrage
from market.backfill import fill_gap, run_backfill
from market.quality_reports import check_quality
from market.retention import enforce_retention
from market.rollup import roll_up
from market.timeframes import BASE_TIMEFRAME


@shared_task
def rollup_task() -> str:
    """Roll up the 1m bars written since the last run; every minute."""
    return str(roll_up(timezone.now()))


@shared_task
def backfill_task(job_id: int) -> str:
    """Run (or resume) a backfill job planned by `manage.py backfill --async`."""
    job = run_backfill(job_id)
    return f"{job}: {job.status}, {job.bars} bars in {job.pages} pages"


@shared_task
def gap_fill_task(instrument_id: int, start: str, end: str, timeframe: str = BASE_TIMEFRAME) -> str:
    """Backfill exactly [start, end) of a series: what a collector missed while it was down."""
    bars = fill_gap(instrument_id, datetime.fromisoformat(start), datetime.fromisoformat(end), timeframe=timeframe)
    return f"instrument {instrument_id} {timeframe} {start}..{end}: {bars} bars"


@shared_task
def check_quality_task(day: str | None = None) -> str:
    """Score data quality; without a day, yesterday's (final now) and today's so far. Hourly."""
    now = timezone.now()
    days = [date.fromisoformat(day)] if day else [now.date() - timedelta(days=1), now.date()]
    return "; ".join(f"{d}: {check_quality(d, now)}" for d in days)


@shared_task
def enforce_retention_task() -> str:
    """Delete bars older than their timeframe's retention; daily."""
    return str(enforce_retention(timezone.now(), settings.BAR_RETENTION_DAYS, batch=settings.RETENTION_BATCH))


@shared_task
def detect_arbitrage_task() -> str:
    """Detect cross-exchange opportunities on the latest stored 1m closes and track them; every
    ARBITRAGE_INTERVAL_SECONDS. Running it twice on the same bars changes nothing."""
    return str(detect_arbitrage(timezone.now()))

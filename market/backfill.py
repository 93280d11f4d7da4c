"""Backfill: fetch a span of history from a source into the bar table, resumably. See docs/scheduled.md.

A `BackfillJob` is the checkpoint: everything before its `cursor` is stored, and `page_token` is the
source's cursor where it has one. Each page is stored (through `services.store_bars`, without
broadcasting: history is not live news) in the same transaction as the checkpoint moves, so a job
that dies anywhere resumes after its last stored page, and storing a page twice changes nothing.

Identity: a job is (source, instrument, timeframe, start, end). Without an explicit end, the end is
the start of the current bar when the job is created (only finished bars are fetched; the live
collector owns the running one), and running the same command again resumes the unfinished job, or
fetches only what is new since the last finished one. A finished job run again does nothing.

Gap fill: after a restart, the collector asks for exactly the span it missed
(`request_gap_fill`), which becomes a job of that span run by the gap-fill task.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from market.barstore import BarRow
from market.history import HISTORY_SOURCES, HistoryClient, HistoryConfig, HistoryError, history_client
from market.history.base import BarPage
from market.models import BackfillJob, BackfillStatus, Instrument
from market.services import store_bars
from market.timeframes import BASE_TIMEFRAME, bucket_start, parse_timeframe

log = logging.getLogger(__name__)

# The history source of each exchange's instruments (exchange code -> source name).
EXCHANGE_SOURCES = {"binance": "binance", "binance-futures": "binance-futures", "alpaca": "alpaca", "yahoo": "yahoo"}

# Called after each stored page with the job (its cursor moved) and the bars stored.
Progress = Callable[[BackfillJob, int], None]


class BackfillError(Exception):
    """A backfill that cannot start (unknown source, unsupported timeframe, bad span)."""


def history_config() -> HistoryConfig:
    return HistoryConfig(
        binance_url=settings.BINANCE_API_URL,
        binance_futures_url=settings.BINANCE_FUTURES_API_URL,
        alpaca_url=settings.ALPACA_DATA_URL,
        alpaca_key=settings.ALPACA_API_KEY,
        alpaca_secret=settings.ALPACA_SECRET_KEY,
        alpaca_feed=settings.ALPACA_STOCK_FEED,
        yahoo_url=settings.YAHOO_BASE_URL,
        min_interval=settings.BACKFILL_REQUEST_INTERVAL,
    )


def client_for(source: str) -> HistoryClient:
    try:
        return history_client(source, history_config())
    except ValueError as exc:
        raise BackfillError(str(exc)) from exc


def source_of(instrument: Instrument) -> str:
    source = EXCHANGE_SOURCES.get(instrument.exchange.code)
    if source is None:
        known = ", ".join(f"{code} -> {name}" for code, name in EXCHANGE_SOURCES.items())
        raise BackfillError(f"no history source for exchange {instrument.exchange.code!r} ({known})")
    return source


def plan_backfill(
    source: str,
    instrument: Instrument,
    timeframe: str,
    start: datetime,
    end: datetime | None,
    now: datetime,
    *,
    client: HistoryClient | None = None,
    gap_fill: bool = False,
    restart: bool = False,
) -> BackfillJob:
    """The job for this span: an existing one to resume, or a new one. Nothing is fetched yet."""
    if source not in HISTORY_SOURCES:
        raise BackfillError(f"unknown source {source!r}; available: {', '.join(HISTORY_SOURCES)}")
    reason = (client or client_for(source)).supports(instrument.symbol, timeframe)
    if reason is not None:
        raise BackfillError(reason)
    start = bucket_start(start, timeframe)
    same = BackfillJob.objects.filter(source=source, instrument=instrument, timeframe=timeframe, start=start)
    if end is None:
        unfinished = same.exclude(status=BackfillStatus.DONE).order_by("-created_at").first()
        if unfinished is not None and not restart:
            return unfinished
        end = bucket_start(now, timeframe)
    if start >= end:
        raise BackfillError(f"nothing to fetch: the span {start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M} is empty")
    # What a finished job from the same start already covers is not fetched again.
    done = same.filter(status=BackfillStatus.DONE, end__lte=end).order_by("-end").first()
    cursor = done.end if done is not None and not restart else start
    job, created = BackfillJob.objects.get_or_create(
        source=source,
        instrument=instrument,
        timeframe=timeframe,
        start=start,
        end=end,
        defaults={"cursor": cursor, "gap_fill": gap_fill, "status": BackfillStatus.PENDING},
    )
    if restart and not created:
        job.cursor, job.page_token, job.status, job.finished_at = start, "", BackfillStatus.PENDING, None
        job.save(update_fields=["cursor", "page_token", "status", "finished_at", "updated_at"])
    return job


def run_backfill(job_id: int, *, client: HistoryClient | None = None, progress: Progress | None = None) -> BackfillJob:
    """Fetch and store the rest of a job, page by page; a finished job is left as it is."""
    job = BackfillJob.objects.select_related("instrument").get(pk=job_id)
    if job.status == BackfillStatus.DONE:
        return job
    client = client or client_for(job.source)
    job.status, job.error = BackfillStatus.RUNNING, ""
    job.save(update_fields=["status", "error", "updated_at"])
    try:
        while job.status != BackfillStatus.DONE:
            page = client.page(job.instrument.symbol, job.timeframe, job.cursor, job.end, job.page_token)
            stored = _store_page(job, page, timezone.now())
            if progress is not None:
                progress(job, stored)
    except (HistoryError, BackfillError) as exc:
        _fail(job, str(exc))
        raise
    except BaseException:
        _fail(job, "interrupted; run it again to resume")
        raise
    log.info("backfill %s: done, %d bars in %d pages", job, job.bars, job.pages)
    return job


def _store_page(job: BackfillJob, page: BarPage, now: datetime) -> int:
    step = parse_timeframe(job.timeframe)
    rows = [
        BarRow(
            job.instrument_id,
            job.timeframe,
            bar.time,
            bar.open,
            bar.high,
            bar.low,
            bar.close,
            bar.volume,
            bar.trades,
            bar.vwap,
            bar.time + step <= now,
        )
        for bar in page.bars
    ]
    next_start = page.next_start
    if next_start is not None and next_start <= job.cursor and not page.next_token:
        raise BackfillError(f"{job.source} did not move past {job.cursor:%Y-%m-%d %H:%M}; stopped to avoid a loop")
    with transaction.atomic():
        if rows:
            store_bars(rows, publish=False)
        job.pages += 1
        job.bars += len(rows)
        job.page_token = page.next_token
        if next_start is None:
            job.cursor, job.status, job.finished_at = job.end, BackfillStatus.DONE, now
        else:
            job.cursor = min(next_start, job.end)
        job.save()
    return len(rows)


def _fail(job: BackfillJob, message: str) -> None:
    job.status, job.error = BackfillStatus.FAILED, message
    job.save(update_fields=["status", "error", "updated_at"])


def fill_gap(
    instrument_id: int,
    start: datetime,
    end: datetime,
    *,
    source: str | None = None,
    timeframe: str = BASE_TIMEFRAME,
    now: datetime | None = None,
) -> int:
    """Backfill exactly [start, end) of a series; returns the bars the source had for it.

    `source` is the name of the collector's source that saw the gap: used if it is a history source
    too (binance, alpaca, yahoo); otherwise (replay, tests) the instrument's exchange decides.
    Called by the collector (in a worker thread) and by `gap_fill_task`.
    """
    instrument = Instrument.objects.select_related("exchange").get(pk=instrument_id)
    history_source = source if source in HISTORY_SOURCES else source_of(instrument)
    client = client_for(history_source)
    moment = now or timezone.now()
    job = plan_backfill(history_source, instrument, timeframe, start, end, moment, client=client, gap_fill=True)
    job = run_backfill(job.pk, client=client)
    return job.bars


def queue_backfill(job_id: int) -> None:
    """Run (or resume) a planned job in a worker once the current transaction commits."""
    from market.tasks import backfill_task

    transaction.on_commit(lambda: backfill_task.delay(job_id))


def request_gap_fill(instrument_id: int, start: datetime, end: datetime, timeframe: str = BASE_TIMEFRAME) -> None:
    """Schedule a gap fill in a worker once the current transaction commits."""
    from market.tasks import gap_fill_task

    transaction.on_commit(lambda: gap_fill_task.delay(instrument_id, start.isoformat(), end.isoformat(), timeframe))

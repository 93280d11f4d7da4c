"""Server-rendered pages beside the chart: the watchlist overview and the admins' System page.

(The chart's own view stays in market/views.py.) Pages read through the same queries as the API
and render HTML; their scripts change things through the JSON API and follow live data over the
WebSocket.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from celery.schedules import crontab
from celery.schedules import schedule as celery_schedule
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from django_celery_results.models import TaskResult

from accounts import roles
from accounts.audit import sign_in_summary
from accounts.page_access import can, page_requires
from market.models import CollectorStatus, Instrument, QualityReport
from market.overview import price_decimals, sparkline_path
from market.watchlist import OVERVIEW_TIMEFRAME, overview_rows, watched_instruments

RECENT_TASKS = 25
QUALITY_ROWS = 30


@page_requires(roles.READ_MARKET_DATA, public_setting="PUBLIC_MARKET_DATA")
def watchlist(request: HttpRequest) -> HttpResponse:
    instruments, is_default = watched_instruments(request.user)
    rows = overview_rows(instruments)
    watched = {instrument.pk for instrument in instruments} if not is_default else set()
    context = {
        "rows": [
            {
                "row": row,
                "spark_path": sparkline_path(row.day.sparkline),
                "spark_json": json.dumps(row.day.sparkline, separators=(",", ":")),
                "decimals": price_decimals(row.day.last),
            }
            for row in rows
        ],
        "is_default": is_default,
        "editable": can(request.user, roles.READ_MARKET_DATA),
        "addable": Instrument.objects.active().exclude(pk__in=watched).select_related("exchange"),
        "timeframe": OVERVIEW_TIMEFRAME,
    }
    return render(request, "market/watchlist.html", context)


@dataclass(frozen=True)
class BeatEntry:
    name: str
    task: str
    schedule: str
    enabled: bool
    last_run_at: Any
    total_run_count: int | None


def beat_entries() -> list[BeatEntry]:
    """The schedule declared in settings, with what beat's database knows of each entry (beat copies
    the declared entries there when it starts; entries added in the admin are listed too)."""
    stored = {task.name: task for task in PeriodicTask.objects.select_related("interval", "crontab")}
    entries = []
    for name, declared in settings.CELERY_BEAT_SCHEDULE.items():
        task = stored.pop(name, None)
        entries.append(
            BeatEntry(
                name=name,
                task=declared["task"],
                schedule=describe_schedule(task.schedule if task is not None else declared["schedule"]),
                enabled=task.enabled if task is not None else True,
                last_run_at=task.last_run_at if task is not None else None,
                total_run_count=task.total_run_count if task is not None else None,
            )
        )
    for name, task in stored.items():
        if name.startswith("celery."):
            continue  # beat's own housekeeping entry
        entries.append(
            BeatEntry(
                name, task.task, describe_schedule(task.schedule), task.enabled, task.last_run_at, task.total_run_count
            )
        )
    return entries


def describe_schedule(schedule: Any) -> str:
    """ "every 60 s" or "cron 7 * * * *" (minute hour day month weekday), for celery's schedules,
    crontabs and plain seconds alike."""
    if isinstance(schedule, int | float):
        return f"every {schedule:g} s"
    if isinstance(schedule, crontab):
        fields = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")
        return "cron " + " ".join(str(getattr(schedule, f"_orig_{field}")) for field in fields)
    if isinstance(schedule, celery_schedule):
        return f"every {schedule.run_every.total_seconds():g} s"
    return str(schedule)


@page_requires(roles.MANAGE_COLLECTORS)
def system(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    stale = set(CollectorStatus.objects.stale(now, settings.COLLECTOR_STALE_SECONDS).values_list("pk", flat=True))
    collectors = [(collector, collector.pk in stale) for collector in CollectorStatus.objects.all()]
    quality = (
        QualityReport.objects.select_related("instrument__exchange")
        .prefetch_related("findings")
        .order_by("-day", "score", "instrument_id")[:QUALITY_ROWS]
    )
    context = {
        "collectors": collectors,
        "stale_seconds": settings.COLLECTOR_STALE_SECONDS,
        "quality": quality,
        "tasks": TaskResult.objects.order_by("-date_done", "-id")[:RECENT_TASKS],
        "beat": beat_entries(),
        "flower_url": settings.FLOWER_URL,
        "sign_ins": sign_in_summary(now),
        "now": now,
    }
    return render(request, "market/system.html", context)

"""The Celery side: the beat schedule from settings lands in django-celery-beat's tables, the tasks
are registered, run eagerly in tests, and run in a real worker against Redis where there is one."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pandas as pd
import pytest
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from django_celery_beat.models import PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler
from django_celery_results.models import TaskResult

from cryptostock.celery import app
from market.models import Bar
from market.services import store_bars
from market.tasks import check_quality_task, enforce_retention_task, rollup_task
from market.tests.test_rollup import minute_rows

MARKET_ENTRIES = {
    "roll-up": "market.tasks.rollup_task",
    "data-quality": "market.tasks.check_quality_task",
    "retention": "market.tasks.enforce_retention_task",
}


def test_every_scheduled_market_task_is_a_registered_task():
    scheduled = {name: entry["task"] for name, entry in settings.CELERY_BEAT_SCHEDULE.items()}
    assert MARKET_ENTRIES.items() <= scheduled.items()
    app.loader.import_default_modules()
    assert set(MARKET_ENTRIES.values()) <= set(app.tasks)


# Beat calls close_old_connections() between reads: that must not close a test's wrapping transaction.
@pytest.mark.django_db(transaction=True)
def test_beat_copies_the_settings_schedule_into_the_admin_editable_tables():
    DatabaseScheduler(app=app)  # what `celery beat` does when it starts

    tasks = {task.name: task for task in PeriodicTask.objects.select_related("interval", "crontab")}
    assert {name: tasks[name].task for name in MARKET_ENTRIES} == MARKET_ENTRIES
    rollup = tasks["roll-up"]
    assert (rollup.interval.every, rollup.interval.period) == (60, "seconds")
    assert (tasks["retention"].crontab.hour, tasks["retention"].crontab.minute) == ("3", "17")
    assert all(tasks[name].enabled for name in MARKET_ENTRIES)


@pytest.mark.django_db(transaction=True)
def test_a_schedule_disabled_in_the_admin_stays_disabled_when_beat_restarts():
    DatabaseScheduler(app=app)
    PeriodicTask.objects.filter(name="retention").update(enabled=False)

    DatabaseScheduler(app=app)

    assert not PeriodicTask.objects.get(name="retention").enabled


@pytest.mark.django_db
def test_the_tasks_run_eagerly_and_return_a_summary(instrument, sample_data, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.QUALITY_TIMEFRAMES = ["1m"]
    xrp = pd.read_feather(sample_data / "freqtrade" / "XRP_ETH-1m.feather")
    store_bars(minute_rows(instrument.pk, xrp), publish=False)

    rolled = rollup_task.delay().get()
    quality = check_quality_task.delay("2019-10-11").get()
    retention = enforce_retention_task.delay().get()

    assert "bars written: 5m 706" in rolled
    assert quality.startswith("2019-10-11: 1 report(s)")
    assert retention.startswith("deleted 1m 2469")  # 2019 is long past the 90-day horizon
    assert Bar.objects.filter(timeframe="1d").count() == 3


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs Redis (REDIS_URL) for a real worker")
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_the_rollup_from_redis_and_records_the_result(instrument, sample_data, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    xrp = pd.read_feather(sample_data / "freqtrade" / "XRP_ETH-1m.feather").head(30)
    store_bars(minute_rows(instrument.pk, xrp), publish=False)
    app.loader.import_default_modules()

    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=30):
        result = rollup_task.delay()
        summary = result.get(timeout=60)

    assert "bars written: 5m" in summary
    assert Bar.objects.filter(instrument=instrument, timeframe="5m").exists()
    stored = TaskResult.objects.get(task_id=result.id)
    assert (stored.status, stored.task_name) == ("SUCCESS", "market.tasks.rollup_task")
    assert stored.date_done <= datetime.now(UTC)

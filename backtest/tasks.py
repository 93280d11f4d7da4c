"""Celery tasks for backtests: thin, take ids, call services. Safe to run twice."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from backtest import services


@shared_task
def run_backtest_task(backtest_id: int) -> str | None:
    """Run one pending backtest; the status it ended in, or None if it was not pending."""
    status = services.run_backtest(backtest_id)
    return None if status is None else status.value


@shared_task
def fail_stale_backtests_task() -> int:
    """Backtests left `running` by a worker that died, marked failed; how many."""
    return services.fail_stale_backtests(timezone.now(), settings.BACKTEST_STALE_MINUTES)

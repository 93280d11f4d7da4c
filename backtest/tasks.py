"""Celery tasks for backtests: thin, take ids, call services. Safe to run twice."""

from __future__ import annotations

from celery import shared_task

from backtest import services


@shared_task
def run_backtest_task(backtest_id: int) -> str | None:
    """Run one pending backtest; the status it ended in, or None if it was not pending."""
    status = services.run_backtest(backtest_id)
    return None if status is None else status.value

"""Celery tasks for alerts: thin, take ids and ISO times, call services. Safe to run twice."""

from __future__ import annotations

from datetime import datetime

from celery import shared_task
from django.conf import settings

from alerts import delivery, services


@shared_task
def evaluate_bar_closes_task(closes: list[tuple[int, str, str]]) -> int:
    """Judge rules on final bars: [(instrument id, timeframe, bar open time ISO 8601), ...]."""
    parsed = [(int(i), str(tf), datetime.fromisoformat(t)) for i, tf, t in closes]
    return len(services.evaluate_bar_closes(parsed))


@shared_task
def evaluate_bar_close_task(instrument_id: int, timeframe: str, bar_time: str) -> int:
    return len(services.evaluate_bar_close(instrument_id, timeframe, datetime.fromisoformat(bar_time)))


@shared_task
def evaluate_partial_bar_task(
    instrument_id: int, timeframe: str, bar_time: str, ohlcv: tuple[float, float, float, float, float]
) -> int:
    """Judge intrabar price rules on a bar still being built: ohlcv = (open, high, low, close, volume)."""
    o, h, low, c, v = ohlcv
    moment = datetime.fromisoformat(bar_time)
    return len(
        services.evaluate_partial_bar(instrument_id, timeframe, moment, open=o, high=h, low=low, close=c, volume=v)
    )


@shared_task
def check_collectors_task() -> int:
    """Fire collector-down rules; run by beat every ALERTS_COLLECTOR_CHECK_SECONDS."""
    return len(services.check_collectors())


@shared_task
def deliver_alert_task(delivery_id: int, retries: int = 0) -> str:
    """One delivery attempt; after a retryable failure the task schedules itself again, after an
    exponential backoff, until ALERTS_DELIVERY_MAX_RETRIES retries have failed too; then the failure
    is recorded.

    It re-schedules itself rather than raising `self.retry()`: with eager tasks (the embedded setup
    and the tests) and CELERY_TASK_EAGER_PROPAGATES, Celery re-raises the Retry instead of retrying.
    """
    outcome = delivery.attempt_delivery(delivery_id)
    if outcome is not delivery.Attempt.RETRY:
        return outcome.value
    if retries >= settings.ALERTS_DELIVERY_MAX_RETRIES:
        delivery.give_up_delivery(delivery_id)
        return delivery.Attempt.FAILED.value
    deliver_alert_task.apply_async((delivery_id, retries + 1), countdown=delivery.backoff_seconds(retries))
    return outcome.value

"""Celery tasks of the accounts app: thin, call services. Safe to run twice."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from accounts import services


@shared_task
def prune_audit_trail_task() -> str:
    """Delete audit entries older than AUDIT_RETENTION_DAYS; nightly (settings.CELERY_BEAT_SCHEDULE)."""
    events, changes = services.prune_audit_trail(timezone.now(), settings.AUDIT_RETENTION_DAYS)
    return f"{events} sign-in event(s) and {changes} change record(s) deleted"

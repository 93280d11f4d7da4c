"""The daily backup (settings.CELERY_BEAT_SCHEDULE["backup"]); see docs/backups.md."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from backups.services import back_up_and_prune


@shared_task
def backup_task() -> str:
    """Back up the database, then delete the backups the keep policy (BACKUP_KEEP) no longer keeps."""
    return back_up_and_prune(timezone.now())

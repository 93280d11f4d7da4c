"""Celery tasks of the exports app: thin, take ids, call services. Safe to run twice."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from exports import services


@shared_task
def run_export_task(export_id: int) -> str:
    """Write one export's file; a done, failed, running or deleted export is left as it is."""
    export = services.run_export(export_id)
    if export is None:
        return f"export {export_id}: gone"
    return f"export {export_id}: {export.status}, {export.rows} rows, {export.bytes} bytes"


@shared_task
def delete_expired_exports_task() -> str:
    """Delete exports (rows and files) past their expiry; hourly (settings.CELERY_BEAT_SCHEDULE)."""
    return f"{services.delete_expired_exports(timezone.now())} expired export(s) deleted"

"""Background exports of stored bars to a file the user downloads later (docs/exports.md).

An export's file lives under settings.EXPORT_DIR, named after the export's id; it is written under a
temporary name and renamed when complete, so a file named here is always whole. The row says where
the export stands; `file` is set only when it is done.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import models
from django.db.models import Q

from exports.writers import FORMATS
from market.models import TIMEFRAME_CHOICES, Instrument


class ExportFormat(models.TextChoices):
    CSV = "csv", "CSV"
    JSON = "json", "JSON Lines"
    PARQUET = "parquet", "Parquet"


class ExportStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class ExportQuerySet(models.QuerySet["Export"]):
    def expired(self, now: datetime) -> ExportQuerySet:
        return self.filter(expires_at__lte=now)


class Export(models.Model):
    """Bars [start, end) of one series in one format, written by `exports.tasks.run_export_task`."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="exports")
    instrument = models.ForeignKey(Instrument, on_delete=models.CASCADE, related_name="exports")
    timeframe = models.CharField(max_length=4, choices=TIMEFRAME_CHOICES, default="1m")
    start = models.DateTimeField(null=True, blank=True, help_text="First bar time (inclusive); empty: the first bar")
    end = models.DateTimeField(null=True, blank=True, help_text="Bars before this time; empty: up to the last bar")
    format = models.CharField(max_length=8, choices=ExportFormat.choices, default=ExportFormat.CSV)
    status = models.CharField(max_length=8, choices=ExportStatus.choices, default=ExportStatus.PENDING)
    rows = models.PositiveBigIntegerField(default=0, help_text="Bars written")
    bytes = models.PositiveBigIntegerField(default=0, help_text="Size of the file")
    error = models.TextField(blank=True)
    file = models.CharField(max_length=200, blank=True, help_text="File name under EXPORT_DIR, once done")
    created_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(help_text="Row and file are deleted after this")

    objects = ExportQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["expires_at"], name="export_expires_at")]
        constraints = [
            models.CheckConstraint(condition=Q(format__in=list(FORMATS)), name="export_format_known"),
            models.CheckConstraint(condition=Q(status__in=ExportStatus.values), name="export_status_known"),
            models.CheckConstraint(
                condition=Q(start__isnull=True) | Q(end__isnull=True) | Q(start__lt=models.F("end")),
                name="export_start_before_end",
            ),
            models.CheckConstraint(condition=~Q(status="done") | ~Q(file=""), name="export_done_has_file"),
        ]

    def __str__(self) -> str:
        return f"export {self.pk} {self.format} of {self.instrument_id} {self.timeframe}"

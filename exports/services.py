"""Every write of the exports app: creating an export (and queueing its job), running the job, deleting
exports and their files. Views, the task and the commands call these."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from exports.models import Export, ExportStatus
from exports.streams import export_bytes
from exports.writers import EXTENSIONS
from market.models import Instrument

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Written:
    rows: int
    bytes: int


def export_dir() -> Path:
    return Path(settings.EXPORT_DIR)


def export_path(export: Export) -> Path | None:
    """Where a done export's file is; None before."""
    return export_dir() / export.file if export.file else None


def write_export_file(
    path: Path, fmt: str, instrument_id: int, timeframe: str, start: datetime | None, end: datetime | None
) -> Written:
    """Write the export to `path` whole or not at all: into a temporary file next to it, renamed over
    `path` only once complete (a crash leaves at most a `.partial` file, never a cut-off `path`)."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    size = lines = 0
    try:
        with partial.open("wb") as file:
            for piece in export_bytes(fmt, instrument_id, timeframe, start, end):
                file.write(piece)
                size += len(piece)
                lines += piece.count(b"\n") if fmt != "parquet" else 0
            file.flush()
            os.fsync(file.fileno())
        # A bar per line in CSV (after the header) and JSON Lines; Parquet's footer has the count.
        rows = int(pq.ParquetFile(partial).metadata.num_rows) if fmt == "parquet" else lines - (fmt == "csv")
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return Written(rows, size)


# --- Background exports ----------------------------------------------------------------------------


def create_export(
    owner: Any,
    instrument: Instrument,
    timeframe: str,
    start: datetime | None,
    end: datetime | None,
    fmt: str,
    *,
    now: datetime,
) -> Export:
    """A pending export, and its job queued once the row is committed."""
    export = Export.objects.create(
        owner=owner,
        instrument=instrument,
        timeframe=timeframe,
        start=start,
        end=end,
        format=fmt,
        created_at=now,
        expires_at=now + _ttl(),
    )
    transaction.on_commit(lambda: _queue(export.pk))
    return export


def _queue(export_id: int) -> None:
    from exports.tasks import run_export_task

    run_export_task.delay(export_id)


def run_export(export_id: int) -> Export | None:
    """Write a pending export's file and mark it done, or failed with the error. Only a pending export
    is run: claiming it (pending -> running) is one conditional UPDATE, so a job delivered twice, or
    run for a done, failed or deleted export, changes nothing. None if there is no such export."""
    claimed = Export.objects.filter(pk=export_id, status=ExportStatus.PENDING).update(
        status=ExportStatus.RUNNING, started_at=timezone.now()
    )
    export = Export.objects.filter(pk=export_id).first()
    if export is None or not claimed:
        return export
    name = f"{export.pk}.{EXTENSIONS[export.format]}"
    try:
        export_dir().mkdir(parents=True, exist_ok=True)
        written = write_export_file(
            export_dir() / name, export.format, export.instrument_id, export.timeframe, export.start, export.end
        )
    except Exception as exc:
        logger.exception("export %s failed", export_id)
        moment = timezone.now()
        Export.objects.filter(pk=export_id).update(
            status=ExportStatus.FAILED, error=f"{type(exc).__name__}: {exc}"[:2000], finished_at=moment
        )
    else:
        moment = timezone.now()
        marked = Export.objects.filter(pk=export_id).update(
            status=ExportStatus.DONE,
            file=name,
            rows=written.rows,
            bytes=written.bytes,
            finished_at=moment,
            expires_at=moment + _ttl(),
        )
        if not marked:  # deleted while it ran: nobody will ever download the file
            (export_dir() / name).unlink(missing_ok=True)
            return None
    export.refresh_from_db()
    return export


def delete_export(export: Export) -> None:
    """The row, and the file once the deletion is committed (a rolled-back delete keeps both)."""
    path = export_path(export)
    export.delete()
    if path is not None:
        transaction.on_commit(lambda: path.unlink(missing_ok=True))


def delete_expired_exports(now: datetime) -> int:
    """Delete every export whose time is up, with its file; how many. Also partial files older than
    the time to live: what a worker killed while writing (no chance to clean up) left behind."""
    deleted = 0
    for export in Export.objects.expired(now).only("pk", "file"):
        with transaction.atomic():
            delete_export(export)
        deleted += 1
    oldest = (now - _ttl()).timestamp()
    for partial in export_dir().glob(".*.partial"):
        if partial.stat().st_mtime < oldest:
            partial.unlink(missing_ok=True)
    return deleted


def _ttl() -> timedelta:
    return timedelta(hours=settings.EXPORT_TTL_HOURS)

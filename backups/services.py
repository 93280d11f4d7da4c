"""Backups of the whole database into BACKUP_DIR: taking one, listing, checking, pruning by the
keep policy and restoring. See docs/backups.md.

A backup is one file, `cryptostock-<UTC time>.pgdump` (PostgreSQL) or `.sqlite3.gz` (SQLite), with
a `.sha256` beside it in sha256sum's format. It is written under a temporary name, read back
(pg_restore lists the archive; SQLite checks the copy's integrity), checksummed, and only then
renamed into place: a file with a backup's name is always a whole, readable backup. One backup or
prune at a time per directory (a lock file), so the daily task and a manual run cannot collide.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.db import connection

from accounts.audit import process_name
from backups import dumps
from backups.copying import run_copy_command
from backups.dumps import POSTGRES_SUFFIX, SQLITE_SUFFIX
from backups.errors import BackupError
from backups.rotation import KeepPolicy, backups_to_keep

log = logging.getLogger(__name__)
audit_log = logging.getLogger("cryptostock.audit")

PREFIX = "cryptostock-"
TIME_FORMAT = "%Y%m%dT%H%M%SZ"
CHECKSUM_SUFFIX = ".sha256"
PARTIAL_SUFFIX = ".partial"
_SUFFIXES = {"postgresql": POSTGRES_SUFFIX, "sqlite": SQLITE_SUFFIX}


@dataclass(frozen=True, slots=True)
class Backup:
    path: Path
    taken_at: datetime
    size: int

    @property
    def vendor(self) -> str:
        return "postgresql" if self.path.name.endswith(POSTGRES_SUFFIX) else "sqlite"

    @property
    def checksum_path(self) -> Path:
        return self.path.with_name(self.path.name + CHECKSUM_SUFFIX)

    def __str__(self) -> str:
        return f"{self.path.name} ({self.size / 1e6:.1f} MB)"


@dataclass(frozen=True, slots=True)
class Pruned:
    kept: list[Backup]
    deleted: list[Backup]

    def __str__(self) -> str:
        return f"kept {len(self.kept)}, deleted {len(self.deleted)}"


def backup_dir() -> Path:
    return Path(settings.BACKUP_DIR)


def take_backup(now: datetime) -> Backup:
    """Back up the default database now; the new backup is whole and checked, or BackupError."""
    directory = backup_dir()
    with _exclusive(directory):
        _remove_partials(directory)  # left by a run that died; none can be in progress under the lock
        path = directory / f"{PREFIX}{now.astimezone(UTC):{TIME_FORMAT}}{_suffix_of_this_database()}"
        if path.exists():
            raise BackupError(f"{path.name} exists already: one backup a second at most")
        partial = path.with_name(path.name + PARTIAL_SUFFIX)
        try:
            _dump(partial)
            _check(partial)
            digest = _sha256(partial)
            _write_durably(path.with_name(path.name + CHECKSUM_SUFFIX), f"{digest}  {path.name}\n".encode())
            _fsync(partial)
            os.replace(partial, path)
            _fsync(directory)
        finally:
            partial.unlink(missing_ok=True)
    backup = _backup_at(path)
    log.info("backup taken: %s", backup)
    return backup


def list_backups() -> list[Backup]:
    """The backups in BACKUP_DIR, oldest first. Files of other names are not backups and left alone."""
    directory = backup_dir()
    if not directory.is_dir():
        return []
    found = (_backup_at(path) for path in directory.iterdir() if _taken_at(path) is not None)
    return sorted(found, key=lambda backup: backup.taken_at)


def prune_backups(policy: KeepPolicy) -> Pruned:
    """Delete the backups the keep policy does not keep (the newest is always kept)."""
    with _exclusive(backup_dir()):
        backups = list_backups()
        keep = backups_to_keep((backup.taken_at for backup in backups), policy)
        deleted = [backup for backup in backups if backup.taken_at not in keep]
        for backup in deleted:
            backup.path.unlink()
            backup.checksum_path.unlink(missing_ok=True)
            log.info("backup deleted by the keep policy: %s", backup.path.name)
    return Pruned(kept=[backup for backup in backups if backup.taken_at in keep], deleted=deleted)


def back_up_and_prune(now: datetime) -> str:
    """What the daily task does: a new backup, its copy elsewhere (BACKUP_COPY_COMMAND), then the
    keep policy. A failed copy fails the run before pruning: the local backups are then all there
    is, and the failure shows in the task results and in /metrics. Returns a summary."""
    backup = take_backup(now)
    copied = copy_elsewhere(backup)
    pruned = prune_backups(settings.BACKUP_KEEP)
    return f"{backup}; {copied}{pruned}"


def copy_elsewhere(backup: Backup) -> str:
    """Run BACKUP_COPY_COMMAND for the backup, if one is set; what the summary says of it."""
    template = settings.BACKUP_COPY_COMMAND
    if not template:
        return ""
    run_copy_command(
        template,
        {"backup": str(backup.path), "checksum": str(backup.checksum_path), "dir": str(backup.path.parent)},
        timeout=settings.BACKUP_COPY_TIMEOUT,
    )
    log.info("backup copied: %s", backup.path.name)
    return "copied elsewhere; "


def verify_backup(path: Path) -> str:
    """Check a backup without restoring it: its checksum, then that its archive reads whole."""
    backup = _existing_backup(path)
    _check_checksum(backup)
    tables = _check(backup.path)
    return f"{backup.path.name}: checksum matches, {tables} tables readable"


def restore_backup(path: Path, *, into: str | None = None) -> None:
    """Replace the default database's contents (or those of database/file `into`) with the backup's.
    The backup is verified first; a backup that fails verification restores nothing."""
    restore(restorable_backup(path), into=into)


def restorable_backup(path: Path) -> Backup:
    """The backup at `path`, if this database can take it: named like a backup, of this database's
    kind, and matching its checksum. BackupError says which it is not."""
    backup = _existing_backup(path)
    if backup.vendor != connection.vendor:
        raise BackupError(f"{backup.path.name} is a {backup.vendor} backup; this database is {connection.vendor}")
    _check_checksum(backup)
    return backup


def restore(backup: Backup, *, into: str | None = None) -> None:
    """`restore_backup` for a backup that `restorable_backup` has just given: its checks not again."""
    if connection.in_atomic_block:
        raise BackupError("a restore cannot run inside a transaction")
    if connection.vendor == "postgresql":
        _restore_postgresql(backup, into)
    else:
        _restore_sqlite(backup, into)
    log.warning("database restored from %s", backup.path.name)
    # The database's own audit trail was just replaced with the backup's: this line is the record.
    audit_log.warning(
        "database %s restored from %s by %s",
        into or connection.settings_dict["NAME"],
        backup.path.name,
        process_name(),
        extra={"audit": "restore", "backup": backup.path.name, "into": into, "via": process_name()},
    )


def sessions_in_the_way(into: str | None = None) -> list[str]:
    """Other connections to the database a restore would replace: what should be stopped first."""
    if connection.vendor != "postgresql":
        return []
    connection.close()  # this process's own connection is not in the way, and the restore needs none
    return dumps.other_sessions(connection.settings_dict, into or connection.settings_dict["NAME"])


# --- Helpers --------------------------------------------------------------------------------------


def _suffix_of_this_database() -> str:
    if connection.vendor not in _SUFFIXES:
        raise BackupError(f"backups support PostgreSQL and SQLite, not {connection.vendor}")
    return _SUFFIXES[connection.vendor]


def _dump(target: Path) -> None:
    if connection.vendor == "postgresql":
        dumps.dump_postgresql(
            connection.settings_dict,
            target,
            compression=settings.BACKUP_COMPRESSION,
            bin_dir=settings.BACKUP_PG_BIN_DIR,
        )
    else:
        if connection.in_atomic_block:  # SQLite's backup API would wait for the transaction forever
            raise BackupError("a SQLite backup cannot be taken inside a transaction")
        connection.ensure_connection()
        dumps.dump_sqlite(connection.connection, target, compression=settings.BACKUP_COMPRESSION)


def _check(path: Path) -> int:
    if path.name.removesuffix(PARTIAL_SUFFIX).endswith(POSTGRES_SUFFIX):
        return dumps.check_postgresql_archive(path, bin_dir=settings.BACKUP_PG_BIN_DIR)
    return dumps.check_sqlite_archive(path)


def _restore_postgresql(backup: Backup, into: str | None) -> None:
    dumps.restore_postgresql(
        connection.settings_dict,
        backup.path,
        name=into or connection.settings_dict["NAME"],
        bin_dir=settings.BACKUP_PG_BIN_DIR,
    )
    connection.close()  # its cached state (prepared statements, types) may name dropped objects


def _restore_sqlite(backup: Backup, into: str | None) -> None:
    if into:
        with closing(sqlite3.connect(into)) as target:
            dumps.restore_sqlite(backup.path, target)
        return
    connection.ensure_connection()
    dumps.restore_sqlite(backup.path, connection.connection)


def _existing_backup(path: Path) -> Backup:
    path = Path(path)
    if not path.is_file():
        raise BackupError(f"no such backup: {path}")
    if _taken_at(path) is None:
        raise BackupError(
            f"{path.name} is not named like a backup ({PREFIX}<UTC time>{POSTGRES_SUFFIX} or {SQLITE_SUFFIX})"
        )
    return _backup_at(path)


def _check_checksum(backup: Backup) -> None:
    if not backup.checksum_path.is_file():
        raise BackupError(f"{backup.checksum_path.name} is missing: the backup cannot be verified")
    recorded = backup.checksum_path.read_text().split(maxsplit=1)[0] if backup.checksum_path.stat().st_size else ""
    if recorded != _sha256(backup.path):
        raise BackupError(f"{backup.path.name} does not match its checksum: the file is damaged")


def _backup_at(path: Path) -> Backup:
    taken_at = _taken_at(path)
    assert taken_at is not None
    return Backup(path=path, taken_at=taken_at, size=path.stat().st_size)


def _taken_at(path: Path) -> datetime | None:
    name = path.name
    suffix = next((suffix for suffix in _SUFFIXES.values() if name.endswith(suffix)), None)
    if suffix is None or not name.startswith(PREFIX):
        return None
    try:
        return datetime.strptime(name.removeprefix(PREFIX).removesuffix(suffix), TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def _remove_partials(directory: Path) -> None:
    """Remove what a backup that died left: its partial file, a checksum written before the rename."""
    orphans = [path for path in directory.glob(f"{PREFIX}*{CHECKSUM_SUFFIX}") if not path.with_suffix("").exists()]
    for leftover in [*directory.glob(f"{PREFIX}*{PARTIAL_SUFFIX}"), *orphans]:
        log.warning("removing %s, left by a backup that did not finish", leftover.name)
        leftover.unlink(missing_ok=True)


@contextmanager
def _exclusive(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BackupError(f"another backup or prune is running in {directory}") from None
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _write_durably(path: Path, content: bytes) -> None:
    with path.open("wb") as file:
        file.write(content)
        file.flush()
        os.fsync(file.fileno())


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)

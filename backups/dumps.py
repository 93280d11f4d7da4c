"""Dumping and restoring one database: PostgreSQL through its own tools (pg_dump's custom format,
pg_restore in a single transaction), SQLite through its online backup API. Adapters at the edge:
they know the tools and the files, nothing of where backups are kept or how many.

Both formats are the ordinary ones, restorable by hand without this project: `pg_restore` for a
`.pgdump`, `gunzip` for a `.sqlite3.gz` (docs/backups.md).
"""

from __future__ import annotations

import gzip
import os
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import psycopg

from backups.errors import BackupError

POSTGRES_SUFFIX = ".pgdump"
SQLITE_SUFFIX = ".sqlite3.gz"
# libpq's environment variables for the connection settings Django may carry in OPTIONS.
_LIBPQ_OPTIONS = {
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "connect_timeout": "PGCONNECT_TIMEOUT",
}


# --- PostgreSQL -----------------------------------------------------------------------------------


def dump_postgresql(database: Mapping[str, Any], target: Path, *, compression: int, bin_dir: str) -> None:
    """pg_dump's custom format (compressed, restorable table by table, in parallel) into `target`."""
    _run(
        _tool("pg_dump", bin_dir),
        ["--format=custom", f"--compress={compression}", f"--file={target}", f"--dbname={database['NAME']}"],
        env=libpq_environment(database),
        failure="pg_dump failed",
    )


def check_postgresql_archive(path: Path, *, bin_dir: str) -> int:
    """The number of tables whose data the archive holds; BackupError if pg_restore cannot read it."""
    return sum(1 for line in _archive_listing(path, bin_dir).splitlines() if " TABLE DATA " in line)


def _archive_listing(path: Path, bin_dir: str) -> str:
    """pg_restore's table of contents of the archive (`--list`)."""
    return _run(_tool("pg_restore", bin_dir), ["--list", str(path)], env=dict(os.environ), failure="unreadable")


def restore_postgresql(database: Mapping[str, Any], path: Path, *, name: str, bin_dir: str) -> None:
    """Replace the objects of database `name` with the archive's, all or nothing: pg_restore runs in
    one transaction and stops at the first error, so a failed restore leaves the database as it was.
    On TimescaleDB the extension's pre- and post-restore steps bracket it, as Timescale requires."""
    listing = _archive_listing(path, bin_dir)
    with _timescale_restoring(database, name), tempfile.TemporaryDirectory() as scratch:
        order = Path(scratch) / "order.list"
        order.write_text(clean_restore_order(listing))
        _run(
            _tool("pg_restore", bin_dir),
            [
                "--clean",
                "--if-exists",
                "--no-owner",
                "--no-privileges",
                "--single-transaction",
                "--exit-on-error",
                f"--use-list={order}",
                f"--dbname={name}",
                str(path),
            ],
            env=libpq_environment(database),
            failure="pg_restore failed, nothing was restored",
        )


def clean_restore_order(listing: str) -> str:
    """pg_restore's table of contents (`--list`) with the indexes of partitions moved before every
    other index and key, so that `--clean`, which drops in reverse order, drops a partitioned
    table's index first, and with it the partitions' (the bar table, migration 0012). In dump
    order it drops a partition's first, which PostgreSQL refuses while the partition's index is
    attached to its table's ("cannot drop inherited constraint"). Creating them earlier is
    harmless: the table's own index is made ONLY on the table and attached afterwards."""
    entries = [(entry, _described(entry)) for entry in listing.splitlines()]
    attached = {described[-2] for _, described in entries if described[:2] == ["INDEX", "ATTACH"]}
    indexes = {
        entry
        for entry, described in entries
        if described[:1] in (["INDEX"], ["CONSTRAINT"]) and described[1:2] != ["ATTACH"]
    }
    of_partitions = {entry for entry, described in entries if entry in indexes and described[-2] in attached}
    moved = [entry for entry, _ in entries if entry in of_partitions]
    rest = [entry for entry, _ in entries if entry not in of_partitions]
    first_index = next((at for at, entry in enumerate(rest) if entry in indexes), len(rest))
    return "\n".join([*rest[:first_index], *moved, *rest[first_index:]]) + "\n"


def _described(entry: str) -> list[str]:
    """An entry of pg_restore's listing, `<id>; <class> <oid> <type...> <schema> [<table>] <name> <owner>`,
    from its type on; [] for a comment."""
    if entry.startswith(";") or "; " not in entry:
        return []
    return entry.split("; ", 1)[1].split()[2:]


def other_sessions(database: Mapping[str, Any], name: str) -> list[str]:
    """What else is connected to database `name` (application names or client addresses)."""
    with _connect(database, name) as connection:
        rows = connection.execute(
            """SELECT coalesce(nullif(application_name, ''), client_addr::text, 'local')
               FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()""",
            [name],
        ).fetchall()
    return [row[0] for row in rows]


@contextmanager
def _timescale_restoring(database: Mapping[str, Any], name: str) -> Iterator[None]:
    with _connect(database, name) as connection:
        timescale = connection.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
        if timescale:
            connection.execute("SELECT timescaledb_pre_restore()")
        try:
            yield
        finally:
            if timescale:
                connection.execute("SELECT timescaledb_post_restore()")


def _connect(database: Mapping[str, Any], name: str) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(dbname=name, autocommit=True, **_libpq_arguments(database))
    except psycopg.OperationalError as error:
        raise BackupError(f"cannot connect to database {name!r}: {error}".strip()) from error


def _libpq_arguments(database: Mapping[str, Any]) -> dict[str, Any]:
    given = {
        "host": database.get("HOST"),
        "port": database.get("PORT"),
        "user": database.get("USER"),
        "password": database.get("PASSWORD"),
        **{key: value for key, value in database.get("OPTIONS", {}).items() if key in _LIBPQ_OPTIONS},
    }
    return {key: str(value) for key, value in given.items() if value not in (None, "")}


def libpq_environment(database: Mapping[str, Any]) -> dict[str, str]:
    """The connection for pg_dump and pg_restore as libpq's environment variables: the password
    never appears on a command line, where other users of the machine could read it."""
    names = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "password": "PGPASSWORD", **_LIBPQ_OPTIONS}
    return {**os.environ, **{names[key]: value for key, value in _libpq_arguments(database).items()}}


def _tool(name: str, bin_dir: str) -> str:
    found = shutil.which(name, path=bin_dir or None)
    if found is None:
        where = f"in BACKUP_PG_BIN_DIR={bin_dir}" if bin_dir else "on PATH"
        raise BackupError(
            f"{name} not found {where}: install the PostgreSQL client of the server's major version "
            "(e.g. Debian's postgresql-client-16) or set BACKUP_PG_BIN_DIR to its bin directory"
        )
    return found


def _run(tool: str, arguments: list[str], *, env: dict[str, str], failure: str) -> str:
    finished = subprocess.run([tool, *arguments], env=env, capture_output=True, text=True, check=False)
    if finished.returncode != 0:
        raise BackupError(f"{failure}: {finished.stderr.strip() or f'exit status {finished.returncode}'}")
    return finished.stdout


# --- SQLite ---------------------------------------------------------------------------------------


def dump_sqlite(source: sqlite3.Connection, target: Path, *, compression: int) -> None:
    """A consistent copy through SQLite's online backup API (writers may go on), gzipped."""
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        copy = Path(scratch) / "copy.sqlite3"
        with closing(sqlite3.connect(copy)) as destination:
            source.backup(destination)
        with copy.open("rb") as plain, gzip.open(target, "wb", compresslevel=compression) as packed:
            shutil.copyfileobj(plain, packed, 1 << 20)


def check_sqlite_archive(path: Path) -> int:
    """The number of tables in the archive; BackupError if it is not a sound SQLite database."""
    with _unpacked_sqlite(path) as database:
        return int(database.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0])


def restore_sqlite(path: Path, target: sqlite3.Connection) -> None:
    """Replace the whole of the target database with the archive's, in one step of the backup API
    (one write transaction on the target: all or nothing)."""
    with _unpacked_sqlite(path) as database:
        database.backup(target)


@contextmanager
def _unpacked_sqlite(path: Path) -> Iterator[sqlite3.Connection]:
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "restore.sqlite3"
        try:
            with gzip.open(path, "rb") as packed, copy.open("wb") as plain:
                shutil.copyfileobj(packed, plain, 1 << 20)
        except (OSError, EOFError) as error:
            raise BackupError(f"{path.name} is not a gzipped SQLite backup: {error}") from error
        with closing(sqlite3.connect(copy)) as database:
            try:
                verdict = database.execute("PRAGMA quick_check").fetchone()[0]
            except sqlite3.DatabaseError as error:
                raise BackupError(f"{path.name} does not hold a SQLite database: {error}") from error
            if verdict != "ok":
                raise BackupError(f"{path.name} fails SQLite's integrity check: {verdict}")
            yield database

"""Backups of a database holding 1,000,000 bars (100 instruments x 10,000 1m bars of a random walk),
side by side with the tools alone, which are the floor.

PostgreSQL: `take_backup` (pg_dump's custom format, then the archive listed back, the SHA-256 and
the fsyncs) against plain `pg_dump --format=custom` of the same database to a file; and
`restore_backup(into=...)` (checksum, then pg_restore in one transaction) against plain
`pg_restore --single-transaction` into an empty database. SQLite: `take_backup` (backup API,
integrity check, gzip, SHA-256) against the backup API alone into a file. Best of three rounds.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import best_rate, measurement

INSTRUMENTS = 100
BARS_PER_INSTRUMENT = 10_000
ROUNDS = 3
UNIT = "bars/s"


def run() -> Iterator[dict[str, Any]]:
    from django.conf import settings
    from django.db import connection

    from bench.bench_barstore import make_instruments, random_walk_bars
    from market.barstore import upsert_bar_frame

    bars = INSTRUMENTS * BARS_PER_INSTRUMENT
    upsert_bar_frame(random_walk_bars(make_instruments(INSTRUMENTS), BARS_PER_INSTRUMENT))
    with tempfile.TemporaryDirectory(prefix="cryptostock-bench-backups-") as directory:
        settings.BACKUP_DIR = Path(directory) / "backups"
        if connection.vendor == "postgresql":
            yield from postgresql_cases(bars, Path(directory))
        else:
            yield from sqlite_cases(bars, Path(directory))


def postgresql_cases(bars: int, directory: Path) -> Iterator[dict[str, Any]]:
    from django.conf import settings
    from django.db import connection

    from backups.dumps import libpq_environment
    from backups.services import restore_backup, take_backup

    environment = {**libpq_environment(connection.settings_dict), "PGOPTIONS": "-c client_min_messages=warning"}
    name = connection.settings_dict["NAME"]
    plain = directory / "plain.pgdump"

    def pg_dump(level: int) -> None:
        tool = ["pg_dump", "--format=custom", f"--compress={level}", f"--file={plain}", f"--dbname={name}"]
        subprocess.run(tool, env=environment, check=True)

    moments = iter(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=second) for second in range(1000))
    level = settings.BACKUP_COMPRESSION
    floor = best_rate(bars, lambda: pg_dump(level), ROUNDS)
    yield measurement(f"backups.floor.pg_dump_custom_compress_{level}", floor, UNIT)
    ours = best_rate(bars, lambda: take_backup(next(moments)), ROUNDS)
    yield measurement("backups.take_backup.postgresql.vs_pg_dump", ours, UNIT, floor)
    yield measurement("backups.take_backup.postgresql.bytes_per_bar", take_backup(next(moments)).size / bars, "bytes")
    # pg_dump's own default level, 6: what BACKUP_COMPRESSION=6 would cost
    yield measurement(
        "backups.reference.pg_dump_compress_6.vs_floor", best_rate(bars, lambda: pg_dump(6), ROUNDS), UNIT, floor
    )
    yield measurement("backups.reference.pg_dump_compress_6.bytes_per_bar", plain.stat().st_size / bars, "bytes")

    backup = take_backup(next(moments))

    def pg_restore(target: str) -> None:
        tool = ["pg_restore", "--no-owner", "--single-transaction", "--exit-on-error", f"--dbname={target}"]
        subprocess.run([*tool, str(plain)], env=environment, check=True)

    restore_floor = best_restore(bars, environment, f"{name}_restored", pg_restore)
    yield measurement("backups.floor.pg_restore_single_transaction", restore_floor, UNIT)
    ours = best_restore(bars, environment, f"{name}_restored", lambda target: restore_backup(backup.path, into=target))
    yield measurement("backups.restore_backup.postgresql.vs_pg_restore", ours, UNIT, restore_floor)


def best_restore(bars: int, environment: dict[str, str], target: str, restore: Callable[[str], object]) -> float:
    """Bars per second of the fastest restore into a new empty database (made and dropped untimed)."""
    best = 0.0
    for _ in range(ROUNDS):
        psql(environment, f'DROP DATABASE IF EXISTS "{target}"', f'CREATE DATABASE "{target}"')
        started = time.perf_counter()
        restore(target)
        best = max(best, bars / (time.perf_counter() - started))
    psql(environment, f'DROP DATABASE IF EXISTS "{target}"')
    return best


def psql(environment: dict[str, str], *statements: str) -> None:
    for statement in statements:
        subprocess.run(["psql", "-q", "-d", "postgres", "-c", statement], env=environment, check=True)


def sqlite_cases(bars: int, directory: Path) -> Iterator[dict[str, Any]]:
    import sqlite3

    from django.db import connection

    from backups.services import take_backup

    def backup_api() -> None:
        connection.ensure_connection()
        with closing(sqlite3.connect(directory / "plain.sqlite3")) as target:
            connection.connection.backup(target)

    moments = iter(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=second) for second in range(1000))
    floor = best_rate(bars, backup_api, ROUNDS)
    yield measurement("backups.floor.sqlite_backup_api", floor, UNIT)
    ours = best_rate(bars, lambda: take_backup(next(moments)), ROUNDS)
    yield measurement("backups.take_backup.sqlite.vs_backup_api", ours, UNIT, floor)

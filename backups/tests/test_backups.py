"""Backups on the suite's own database (PostgreSQL through pg_dump and pg_restore, SQLite through its
backup API): taken whole and checked, restored all or nothing, pruned by the keep policy."""

from __future__ import annotations

import builtins
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from backups import services
from backups.copying import copy_command_problem
from backups.errors import BackupError
from backups.rotation import KeepPolicy
from backups.services import (
    PREFIX,
    back_up_and_prune,
    list_backups,
    prune_backups,
    restore_backup,
    take_backup,
    verify_backup,
)
from backups.tasks import backup_task
from market.barstore import BarRow, upsert_bars
from market.models import Bar, Exchange, Instrument

NOW = datetime(2026, 11, 27, 2, 41, tzinfo=UTC)
# Transactional: pg_dump reads committed data only, and SQLite's backup API waits forever on a
# connection inside a write transaction (the service refuses that).
pytestmark = pytest.mark.django_db(transaction=True)
needs_postgresql = pytest.mark.skipif("connection.vendor != 'postgresql'", reason="pg_dump and pg_restore")


@pytest.fixture(autouse=True)
def backup_directory(settings, tmp_path) -> Path:
    settings.BACKUP_DIR = tmp_path / "backups"
    return settings.BACKUP_DIR


def a_series(symbol: str, minutes: int, *, price: float = 100.0) -> Instrument:
    exchange, _ = Exchange.objects.get_or_create(code="binance", defaults={"name": "Binance"})
    instrument = Instrument.objects.create(exchange=exchange, symbol=symbol)
    closes = [(NOW + timedelta(minutes=m), price + m % 997 / 100) for m in range(minutes)]
    upsert_bars([BarRow(instrument.pk, "1m", t, c, c + 1, c - 1, c, 5, 3, c, True) for t, c in closes])
    return instrument


def contents() -> dict[str, list[tuple[object, ...]]]:
    """What the tests compare before and after a restore."""
    return {
        "instruments": sorted(Instrument.objects.values_list("exchange__code", "symbol")),
        "bars": sorted(Bar.objects.values_list("instrument__symbol", "timeframe", "time", "close", "volume")),
    }


def damage(path: Path, *, keep_checksum: bool) -> None:
    """Cut the file in half; with keep_checksum, write the checksum of what is left (a damaged copy
    whose sidecar was made from it), so that only the archive itself can tell."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    if keep_checksum:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        path.with_name(path.name + ".sha256").write_text(f"{digest}  {path.name}\n")


def test_a_backup_is_one_whole_file_with_a_checksum_beside_it(backup_directory):
    a_series("BTC/USDT", 30)

    backup = take_backup(NOW)

    suffix = ".pgdump" if connection.vendor == "postgresql" else ".sqlite3.gz"
    assert backup.path == backup_directory / f"cryptostock-20261127T024100Z{suffix}"
    recorded = backup.checksum_path.read_text()
    assert recorded == f"{hashlib.sha256(backup.path.read_bytes()).hexdigest()}  {backup.path.name}\n"
    assert list_backups() == [backup]
    assert verify_backup(backup.path).startswith(f"{backup.path.name}: checksum matches, ")
    assert sorted(path.name for path in backup_directory.iterdir()) == sorted(
        [".lock", backup.path.name, backup.checksum_path.name]
    )


def test_a_restore_brings_back_exactly_what_was_backed_up(caplog):
    # Given a database with two series, backed up
    a_series("BTC/USDT", 120)
    eth = a_series("ETH/USDT", 60, price=3000.0)
    before = contents()
    backup = take_backup(NOW)

    # When bars are deleted and changed and an instrument is added afterwards
    Bar.objects.filter(instrument=eth).delete()
    Bar.objects.filter(time=NOW).update(close=99.5)
    a_series("SOL/USDT", 10)
    assert contents() != before

    # Then the restore gives back exactly the backed-up state
    restore_backup(backup.path)
    assert contents() == before
    # and, the database's own audit trail being the backup's now, the audit log records the restore
    [record] = [r for r in caplog.records if getattr(r, "audit", None) == "restore"]
    assert (record.name, record.backup) == ("cryptostock.audit", backup.path.name)


def test_a_backup_that_does_not_match_its_checksum_restores_nothing():
    a_series("BTC/USDT", 30)
    backup = take_backup(NOW)
    a_series("ETH/USDT", 10)
    now = contents()
    damage(backup.path, keep_checksum=False)

    with pytest.raises(BackupError, match="does not match its checksum: the file is damaged"):
        restore_backup(backup.path)
    assert contents() == now


def test_a_damaged_archive_fails_verification_or_restores_nothing():
    a_series("BTC/USDT", 20_000)  # enough that the cut falls in the bars' data, after the schema
    backup = take_backup(NOW)
    a_series("ETH/USDT", 10)
    now = contents()
    damage(backup.path, keep_checksum=True)

    # pg_restore can list a cut archive's table of contents (it is at the start) but not its data,
    # so on PostgreSQL this is the single transaction's rollback at work; SQLite's check catches it
    with pytest.raises(BackupError, match=r"pg_restore failed, nothing was restored|not a gzipped SQLite backup"):
        restore_backup(backup.path)
    assert contents() == now


@needs_postgresql
def test_a_restore_into_another_database_leaves_this_one_alone():
    a_series("BTC/USDT", 30)
    backup = take_backup(NOW)
    Bar.objects.all().delete()
    scratch = f"{connection.settings_dict['NAME']}_restore_drill"
    server = {key: connection.settings_dict[key] for key in ("HOST", "PORT", "USER", "PASSWORD") if key}
    arguments = {"host": server["HOST"], "port": server["PORT"], "user": server["USER"], "password": server["PASSWORD"]}
    with psycopg.connect(dbname="postgres", autocommit=True, **{k: v for k, v in arguments.items() if v}) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{scratch}"')
        admin.execute(f'CREATE DATABASE "{scratch}"')
        try:
            restore_backup(backup.path, into=scratch)
            with psycopg.connect(dbname=scratch, **{k: v for k, v in arguments.items() if v}) as restored:
                assert restored.execute("SELECT count(*) FROM market_bar").fetchone() == (30,)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{scratch}"')
    assert Bar.objects.count() == 0


def test_a_backup_of_the_other_kind_of_database_is_refused(backup_directory):
    other = ".sqlite3.gz" if connection.vendor == "postgresql" else ".pgdump"
    backup_directory.mkdir(parents=True)
    path = backup_directory / f"{PREFIX}20261127T024100Z{other}"
    path.write_bytes(b"not for this database")

    with pytest.raises(BackupError, match=f"is a .* backup; this database is {connection.vendor}"):
        restore_backup(path)


def test_files_that_are_not_backups_are_refused_with_the_reason(backup_directory, tmp_path):
    with pytest.raises(BackupError, match="no such backup"):
        restore_backup(tmp_path / "missing.pgdump")
    stray = tmp_path / "dump.sql"
    stray.write_text("SELECT 1;")
    with pytest.raises(BackupError, match="is not named like a backup"):
        verify_backup(stray)


def test_one_backup_at_a_time_per_directory(backup_directory):
    with services._exclusive(backup_directory), pytest.raises(BackupError, match="another backup or prune is running"):
        take_backup(NOW)
    assert list_backups() == []


def test_what_a_dead_backup_left_is_removed_by_the_next(backup_directory):
    backup_directory.mkdir(parents=True)
    (backup_directory / f"{PREFIX}20261126T024100Z.pgdump.partial").write_bytes(b"half a dump")
    (backup_directory / f"{PREFIX}20261126T024100Z.pgdump.sha256").write_text("0" * 64)
    (backup_directory / "notes.txt").write_text("the operator's own file")

    backup = take_backup(NOW)

    assert sorted(path.name for path in backup_directory.iterdir()) == sorted(
        [".lock", "notes.txt", backup.path.name, backup.checksum_path.name]
    )


def test_the_daily_run_backs_up_then_prunes_by_the_keep_policy(backup_directory, settings):
    settings.BACKUP_KEEP = KeepPolicy(daily=3, weekly=0, monthly=2)
    backup_directory.mkdir(parents=True)
    for day in range(1, 27):  # one a day until yesterday, and one in October
        stamp = f"202611{day:02d}T024100Z"
        (backup_directory / f"{PREFIX}{stamp}.pgdump").write_bytes(b"old")
        (backup_directory / f"{PREFIX}{stamp}.pgdump.sha256").write_text("0" * 64)
    (backup_directory / f"{PREFIX}20261015T024100Z.sqlite3.gz").write_bytes(b"old")

    summary = back_up_and_prune(NOW)

    # The last three days (today's new one among them), and the newest of November and of October
    assert [backup.taken_at.date().isoformat() for backup in list_backups()] == [
        "2026-10-15",
        "2026-11-25",
        "2026-11-26",
        "2026-11-27",
    ]
    assert summary.endswith("kept 4, deleted 24")
    assert not (backup_directory / f"{PREFIX}20261101T024100Z.pgdump.sha256").exists()  # deleted with its backup


def test_the_task_takes_a_backup(backup_directory):
    summary = backup_task()

    assert [backup.path.name for backup in list_backups()] == [summary.split(" ")[0]]


def test_pruning_keeps_the_newest_even_with_a_policy_of_nothing(backup_directory):
    first, second = take_backup(NOW), take_backup(NOW + timedelta(seconds=1))

    pruned = prune_backups(KeepPolicy(0, 0, 0))

    assert (pruned.kept, pruned.deleted) == ([second], [first])
    assert not first.checksum_path.exists()


@needs_postgresql
def test_without_pg_dump_the_backup_says_what_to_install(settings, tmp_path):
    settings.BACKUP_PG_BIN_DIR = str(tmp_path)

    with pytest.raises(BackupError, match=r"pg_dump not found in BACKUP_PG_BIN_DIR=.*postgresql-client"):
        take_backup(NOW)
    assert list_backups() == []


def test_the_commands_list_verify_and_restore_only_when_told_to(capsys, monkeypatch):
    a_series("BTC/USDT", 30)
    call_command("backup", "--no-prune")
    backup = list_backups()[0]
    call_command("backup", "--list")
    call_command("backup", "--verify", str(backup.path))
    assert str(backup.path) in capsys.readouterr().out
    Bar.objects.all().delete()

    monkeypatch.setattr(builtins, "input", lambda question: "no")
    with pytest.raises(CommandError, match="not restored"):
        call_command("restore", str(backup.path))
    assert Bar.objects.count() == 0

    call_command("restore", str(backup.path), "--yes")
    assert Bar.objects.count() == 30
    damage(backup.path, keep_checksum=False)
    with pytest.raises(CommandError, match="does not match its checksum"):
        call_command("backup", "--verify", str(backup.path))


def test_the_nightly_run_copies_each_backup_elsewhere_before_pruning(backup_directory, settings, tmp_path):
    offsite = tmp_path / "offsite with a space"
    offsite.mkdir()
    settings.BACKUP_COPY_COMMAND = f"cp {{backup}} {{checksum}} '{offsite}'"

    summary = back_up_and_prune(NOW)

    [backup] = list_backups()
    assert "copied elsewhere" in summary
    assert sorted(path.name for path in offsite.iterdir()) == [backup.path.name, backup.checksum_path.name]
    assert (offsite / backup.path.name).read_bytes() == backup.path.read_bytes()


def test_a_failed_copy_fails_the_run_and_prunes_nothing(backup_directory, settings):
    settings.BACKUP_KEEP = KeepPolicy(0, 0, 0)
    older = take_backup(NOW - timedelta(days=1))
    settings.BACKUP_COPY_COMMAND = "sh -c 'echo no route to the offsite host >&2; exit 3' {backup}"

    with pytest.raises(BackupError, match="failed with exit status 3: no route to the offsite host"):
        back_up_and_prune(NOW)
    assert [backup.taken_at for backup in list_backups()] == [older.taken_at, NOW]

    settings.BACKUP_COPY_COMMAND = "no-such-copy-tool {backup}"
    with pytest.raises(BackupError, match="'no-such-copy-tool' was not found"):
        back_up_and_prune(NOW + timedelta(seconds=1))


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("rclone copy {backup} {checksum} offsite:", None),
        ("cp {backup} {destination}", "unknown placeholders ['destination']; known: ['backup', 'checksum', 'dir']"),
        ("cp '{backup} /tmp", "No closing quotation"),
    ],
)
def test_a_copy_command_is_checked_when_the_settings_load(template, problem):
    assert copy_command_problem(template) == problem

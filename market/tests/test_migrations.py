"""Migrations that rebuild the bar table keep every stored bar, forward and back, on both databases."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.apps.registry import Apps
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE_COMPOSITE_KEY = [("market", "0007_watchlist")]
VALUES = ("timeframe", "time", "open", "high", "low", "close", "volume", "trades", "vwap", "final")
START = datetime(2024, 3, 1, tzinfo=UTC)


def migrate(targets: list[tuple[str, str]]) -> Apps:
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def latest() -> list[tuple[str, str]]:
    return MigrationExecutor(connection).loader.graph.leaf_nodes()


def migrated_back_to(targets: list[tuple[str, str]]) -> Iterator[Apps]:
    """The database migrated back to `targets` for a test, and to the latest afterwards."""
    try:
        yield migrate(targets)
    finally:
        migrate(latest())


@pytest.fixture
def at_0007() -> Iterator[Apps]:
    """Before the composite key."""
    yield from migrated_back_to(BEFORE_COMPOSITE_KEY)


def before_forward_and_back[T](apps: Apps, measure: Callable[[Apps], T], back_to: list[tuple[str, str]]) -> list[T]:
    """`measure` at the state a fixture migrated back to, at the latest, and back there again."""
    return [measure(apps), measure(migrate(latest())), measure(migrate(back_to))]


def stored(apps: Apps) -> list[tuple[Any, ...]]:
    return sorted(apps.get_model("market", "Bar").objects.values_list("instrument_id", *VALUES))


def store_some_bars(apps: Apps) -> None:
    exchange = apps.get_model("market", "Exchange").objects.create(code="binance", name="Binance")
    instrument = apps.get_model("market", "Instrument").objects.create(exchange=exchange, symbol="XRP/ETH")
    apps.get_model("market", "Bar").objects.bulk_create(
        apps.get_model("market", "Bar")(
            instrument_id=instrument.pk,
            timeframe=timeframe,
            time=START + timedelta(minutes=minute),
            open=1.0,
            high=2.0 + minute,
            low=0.5,
            close=1.5,
            volume=10.0 * minute,
            trades=None if minute else 3,
            vwap=1.2,
            final=minute < 2,
        )
        for minute in range(3)
        for timeframe in ("1m", "5m")
    )


@pytest.mark.django_db(transaction=True)
def test_the_composite_key_migration_keeps_every_bar_forward_and_back(at_0007):
    # Given bars stored under the surrogate id
    store_some_bars(at_0007)

    # When the bar table gets its composite primary key, and then goes back
    before, after, back = before_forward_and_back(at_0007, stored, BEFORE_COMPOSITE_KEY)

    # Then the bars are the same each time, and the key is the bar's identity
    assert before == after == back
    assert len(before) == 6


@pytest.mark.django_db(transaction=True)
def test_after_the_migration_the_rollup_trigger_still_notes_changed_1m_bars(at_0007):
    # Given the bar table migrated with bars in it
    store_some_bars(at_0007)
    apps = migrate(latest())
    apps.get_model("market", "PendingRollup").objects.all().delete()

    # When a 1m bar is changed through the ORM
    apps.get_model("market", "Bar").objects.filter(timeframe="1m", time=START).update(volume=99.0)

    # Then the roll-up's change log has it
    pending = apps.get_model("market", "PendingRollup").objects.values_list("first_time", "last_time")
    assert list(pending) == [(START, START)]


BEFORE_STORE_NOTES = [("market", "0010_admin_role_views_arbitrage")]


@pytest.fixture
def at_0010() -> Iterator[Apps]:
    """Before the store noted the roll-up spans of its own appends."""
    yield from migrated_back_to(BEFORE_STORE_NOTES)


def notes_of_a_write_while_the_store_says_it_noted(apps: Apps) -> int:
    """How many roll-up notes a 1m bar written with `cryptostock.rollup_noted` on leaves behind."""
    from django.db import transaction

    apps.get_model("market", "PendingRollup").objects.all().delete()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT set_config('cryptostock.rollup_noted', 'on', true)")
        apps.get_model("market", "Bar").objects.filter(timeframe="1m", time=START).update(volume=7.0)
    return apps.get_model("market", "PendingRollup").objects.count()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite's triggers are not changed")
@pytest.mark.django_db(transaction=True)
def test_the_trigger_skips_what_the_store_noted_only_after_the_migration_and_not_after_its_reversal(at_0010):
    store_some_bars(at_0010)

    notes = before_forward_and_back(at_0010, notes_of_a_write_while_the_store_says_it_noted, BEFORE_STORE_NOTES)

    assert notes == [1, 0, 1]


BEFORE_PARTITIONS = [("market", "0011_rollup_notes_by_the_bar_store")]


@pytest.fixture
def at_0011() -> Iterator[Apps]:
    """Before the bar table was partitioned by timeframe."""
    yield from migrated_back_to(BEFORE_PARTITIONS)


def partitions() -> dict[str, str]:
    """The bar table's partitions, by name, with their bounds."""
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits AS i
               JOIN pg_class AS c ON c.oid = i.inhrelid WHERE i.inhparent = 'market_bar'::regclass"""
        )
        return dict(cursor.fetchall())


def bars_and_layout(apps: Apps) -> tuple[list[tuple[Any, ...]], str, int]:
    """The stored bars, the bar table's primary key and its number of partitions."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'market_bar_pkey'")
        (key,) = cursor.fetchone()
    return stored(apps), key, len(partitions())


only_postgresql = pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite's bar table is not partitioned")


@only_postgresql
@pytest.mark.django_db
def test_every_timeframe_has_its_partition_of_the_bar_table():
    from market.timeframes import TIMEFRAMES

    assert partitions() == {f"market_bar_{timeframe}": f"FOR VALUES IN ('{timeframe}')" for timeframe in TIMEFRAMES}


@only_postgresql
@pytest.mark.django_db(transaction=True)
def test_partitioning_the_bar_table_keeps_every_bar_forward_and_back(at_0011):
    store_some_bars(at_0011)

    before, after, back = before_forward_and_back(at_0011, bars_and_layout, BEFORE_PARTITIONS)

    assert len(before[0]) == 6
    assert before[0] == after[0] == back[0]
    assert before[1:] == back[1:] == ('PRIMARY KEY (instrument_id, timeframe, "time")', 0)
    assert after[1:] == ('PRIMARY KEY (instrument_id, "time", timeframe)', 6)

"""The bar store against Django's bulk_create and against the floor, raw binary COPY.

1,000,000 bars (100 instruments x 10,000 one-minute bars of a random walk) are written as new bars
(three rounds interleaved with the floor's, best of each), then again unchanged, then again with
every price changed; through `upsert_bars` (BarRow objects,
the collectors' form) and `upsert_bar_frame` (a DataFrame, the importers' form). bulk_create is
measured on the first 100,000 bars: at its speed the full set would take a minute or more.
Every timing includes the commit, where PostgreSQL checks the deferred foreign key of each new row.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Generator, Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from bench import BenchUnavailable, measurement

INSTRUMENTS = 100
BARS_PER_INSTRUMENT = 10_000
BULK_CREATE_BARS = 100_000
BULK_CREATE_BATCH = 1000  # 500, 1000, 5000 and all-in-one measured: 1000 was fastest, by a little
SMALL_BATCH = 500
SMALL_BATCHES_BARS = 100_000
NEW_BAR_ROUNDS = 3
UNIT = "bars/s"
FIRST_BAR = datetime(2024, 1, 1, tzinfo=UTC)
COLUMNS = "instrument_id, timeframe, time, open, high, low, close, volume, trades, vwap, final"
COPY_TYPES = ["int8", "text", "timestamptz", "float8", "float8", "float8", "float8", "float8", "int4", "float8", "bool"]


def run() -> Iterator[dict[str, Any]]:
    from django.db import connection

    from market.barstore import binary_copy_blocks, columns_from_frame

    if connection.vendor != "postgresql":
        raise BenchUnavailable("needs PostgreSQL: set DATABASE_URL=postgres://user@host:5432/anydb")
    frame = random_walk_bars(make_instruments(INSTRUMENTS), BARS_PER_INSTRUMENT)
    rows = bar_rows(frame)
    encoded = [bytes(block) for block in binary_copy_blocks(columns_from_frame(frame))]
    new_bars = new_bars_interleaved(frame, rows, encoded)
    floor = new_bars.pop("floor")
    yield measurement("barstore.floor.binary_copy_unindexed", floor, UNIT)
    yield from references(encoded, rows, floor)
    bulk_new, bulk_again = yield from baselines(rows[:BULK_CREATE_BARS])
    for name, value in new_bars.items():
        yield measurement(f"barstore.{name}.vs_bulk_create", value, UNIT, bulk_new)
        yield measurement(f"barstore.{name}.vs_floor", value, UNIT, floor)
    yield from re_upsert_cases(frame, rows, floor=floor, bulk_new=bulk_new, bulk_again=bulk_again)


def new_bars_interleaved(frame: pd.DataFrame, rows: list[Any], encoded: list[bytes]) -> dict[str, float]:
    """The floor (pre-encoded bytes into a bare table) and the store's new bars in both forms, each
    into an empty table, their rounds interleaved, best of each: side by side, so that a change in
    the machine's speed during the run weighs on both alike (one floor measured before everything
    else moved the ratios by up to 0.05 from run to run)."""
    from market.barstore import upsert_bar_frame, upsert_bars

    writes: dict[str, Callable[[], object]] = {
        "floor": lambda: copy_into_new_table("", lambda copy: write_blocks(copy, encoded)),
        "upsert_bars.new": lambda: upsert_bars(rows),
        "upsert_bar_frame.new": lambda: upsert_bar_frame(frame),
    }
    best = dict.fromkeys(writes, 0.0)
    for _ in range(NEW_BAR_ROUNDS):
        for name, write in writes.items():
            empty_bar_table()
            best[name] = max(best[name], rate(len(rows), write))
    empty_bar_table()
    return best


def references(encoded: list[bytes], rows: list[Any], floor: float) -> Iterator[dict[str, Any]]:
    """psycopg's own row-by-row COPY, and what the schema of market_bar costs: the same bytes as the
    floor into a table with only its primary key (the least an idempotent store needs), into
    market_bar, and into its 1m partition, where the store writes new 1m bars on plain PostgreSQL."""
    write_row = rate(len(rows), lambda: copy_into_new_table("", lambda copy: write_rows(copy, rows)))
    yield measurement("barstore.reference.psycopg_write_row_unindexed", write_row, UNIT, floor)
    key_only = rate(len(rows), lambda: copy_into_new_table(PRIMARY_KEY, lambda copy: write_blocks(copy, encoded)))
    yield measurement("barstore.reference.binary_copy_primary_key_only", key_only, UNIT, floor)
    as_is = rate(len(rows), lambda: copy_into_bar_table(encoded, "market_bar"))
    yield measurement("barstore.reference.binary_copy_into_market_bar", as_is, UNIT, floor)
    empty_bar_table()
    if bar_table_partitioned():  # where the store's new bars go (migration 0012)
        partition = rate(len(rows), lambda: copy_into_bar_table(encoded, "market_bar_1m"))
        yield measurement("barstore.reference.binary_copy_into_market_bar_1m", partition, UNIT, floor)
        empty_bar_table()


def baselines(rows: list[Any]) -> Generator[dict[str, Any], None, tuple[float, float]]:
    bulk_new = rate(len(rows), lambda: bulk_create(rows, upsert=False))
    yield measurement("barstore.baseline.bulk_create_new", bulk_new, UNIT)
    bulk_again = rate(len(rows), lambda: bulk_create(rows, upsert=True))
    yield measurement("barstore.baseline.bulk_create_upsert_existing", bulk_again, UNIT)
    empty_bar_table()
    return bulk_new, bulk_again


def re_upsert_cases(
    frame: pd.DataFrame, rows: list[Any], *, floor: float, bulk_new: float, bulk_again: float
) -> Iterator[dict[str, Any]]:
    """The 1M bars stored (not timed), then written again: identical in both forms, then changed;
    and a collector's small batches of new bars into an empty table."""
    from market.barstore import upsert_bar_frame, upsert_bars

    changed = bar_rows(with_changed_prices(frame))
    upsert_bar_frame(frame)
    # (name, bars written, how, compared with, starts from an empty table)
    cases: list[tuple[str, int, Callable[[], object], float, bool]] = [
        ("upsert_bars.identical", len(rows), lambda: upsert_bars(rows), bulk_again, False),
        ("upsert_bar_frame.identical", len(rows), lambda: upsert_bar_frame(frame), bulk_again, False),
        ("upsert_bars.changed", len(rows), lambda: upsert_bars(changed), bulk_again, False),
        (f"upsert_bars.new_in_batches_of_{SMALL_BATCH}", SMALL_BATCHES_BARS, lambda: in_batches(rows), bulk_new, True),
    ]
    for name, count, write, baseline, fresh in cases:
        if fresh:
            empty_bar_table()
        value = rate(count, write)
        yield measurement(f"barstore.{name}.vs_bulk_create", value, UNIT, baseline)
        yield measurement(f"barstore.{name}.vs_floor", value, UNIT, floor)
    empty_bar_table()


def rate(count: int, write: Callable[[], object]) -> float:
    """Bars per second of `write`, run in its own transaction, commit included. A CHECKPOINT first
    (not timed), so that no measurement pays for writing out the pages an earlier one dirtied: at
    the server's 1 GB max_wal_size a checkpoint otherwise fell into one case or another from run to
    run, moving it by a third either way."""
    from django.db import DatabaseError, connection, transaction

    try:
        with connection.cursor() as cursor:
            cursor.execute("CHECKPOINT")
    except DatabaseError as refused:  # not a superuser nor in pg_checkpoint: measure without
        print(f"barstore: no CHECKPOINT before the measurement ({refused})", file=sys.stderr)
    started = time.perf_counter()
    with transaction.atomic():
        write()
    return count / (time.perf_counter() - started)


def in_batches(rows: list[Any]) -> None:
    """A collector's pattern: many small batches of new bars, so the fixed cost per call shows."""
    from market.barstore import upsert_bars

    for start in range(0, SMALL_BATCHES_BARS, SMALL_BATCH):
        upsert_bars(rows[start : start + SMALL_BATCH])


# --- Data -----------------------------------------------------------------------------------------


def make_instruments(count: int) -> list[int]:
    from market.models import Exchange, Instrument

    exchange = Exchange.objects.create(code="bench", name="Bench")
    instruments = Instrument.objects.bulk_create(
        Instrument(exchange=exchange, symbol=f"BENCH{number}/USDT") for number in range(count)
    )
    return [instrument.id for instrument in instruments]


def random_walk_bars(instrument_ids: list[int], bars_each: int, seed: int = 20240101) -> pd.DataFrame:
    """1m bars of a geometric random walk per instrument, with trades and vwap, as collectors make them."""
    rng = np.random.default_rng(seed)
    series, count = len(instrument_ids), len(instrument_ids) * bars_each
    start = rng.uniform(0.01, 50_000, series).repeat(bars_each)
    close = start * np.exp(rng.normal(0, 1e-3, (series, bars_each)).cumsum(axis=1).ravel())
    open_ = np.concatenate([[walk[0], *walk[:-1]] for walk in close.reshape(series, bars_each)])
    high = np.maximum(open_, close) * (1 + rng.exponential(3e-4, count))
    low = np.minimum(open_, close) * (1 - rng.exponential(3e-4, count))
    minutes = pd.date_range(FIRST_BAR, periods=bars_each, freq="1min")
    return pd.DataFrame(
        {
            "instrument_id": np.repeat(instrument_ids, bars_each),
            "timeframe": "1m",
            "time": np.tile(minutes, series),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": rng.exponential(100, count),
            "trades": rng.integers(1, 500, count),
            "vwap": (low + high) / 2,
            "final": True,
        }
    )


def with_changed_prices(frame: pd.DataFrame) -> pd.DataFrame:
    changed = frame.copy()
    for column in ("open", "high", "low", "close", "vwap"):
        changed[column] = frame[column] * 1.001
    return changed


def bar_rows(frame: pd.DataFrame) -> list[Any]:
    from market.barstore import BarRow

    columns = [frame[name].tolist() for name in BarRow._fields if name != "time"]
    columns.insert(2, frame["time"].dt.to_pydatetime().tolist())
    return [BarRow(*values) for values in zip(*columns, strict=True)]


# --- Writers --------------------------------------------------------------------------------------


PRIMARY_KEY = 'PRIMARY KEY (instrument_id, "time", timeframe)'  # as market_bar's partitions hold it


def copy_into_new_table(constraint: str, feed: Callable[[Any], object]) -> None:
    """Binary COPY into a new table with market_bar's columns and no index, or with `constraint`."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_scratch")
        cursor.execute(f"CREATE TABLE bench_scratch AS SELECT {COLUMNS} FROM market_bar WITH NO DATA")
        if constraint:
            cursor.execute(f"ALTER TABLE bench_scratch ADD {constraint}")
        with cursor.cursor.copy(f"COPY bench_scratch ({COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
            feed(copy)


def copy_into_bar_table(blocks: list[bytes], table: str) -> None:
    from django.db import connection

    sql = f"COPY {table} ({COLUMNS}) FROM STDIN (FORMAT BINARY)"
    with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
        write_blocks(copy, blocks)


def bar_table_partitioned() -> bool:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind = 'p' FROM pg_class WHERE oid = 'market_bar'::regclass")
        return bool(cursor.fetchone()[0])


def write_blocks(copy: Any, blocks: list[bytes]) -> None:
    for block in blocks:
        copy.write(block)


def write_rows(copy: Any, rows: list[Any]) -> None:
    """The textbook psycopg way: every value converted by psycopg's dumpers, row by row."""
    copy.set_types(COPY_TYPES)
    for row in rows:
        copy.write_row(row)


def bulk_create(rows: list[Any], *, upsert: bool) -> None:
    from market.models import Bar

    bars = [Bar(**row._asdict()) for row in rows]
    if not upsert:
        Bar.objects.bulk_create(bars, batch_size=BULK_CREATE_BATCH)
        return
    Bar.objects.bulk_create(
        bars,
        batch_size=BULK_CREATE_BATCH,
        update_conflicts=True,
        unique_fields=["instrument", "timeframe", "time"],
        update_fields=["open", "high", "low", "close", "volume", "trades", "vwap", "final"],
    )


def empty_bar_table() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE market_bar")
        cursor.execute("DROP TABLE IF EXISTS bench_scratch")

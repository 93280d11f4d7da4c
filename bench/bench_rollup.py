"""The roll-up: the product's incremental cascade against two ways of doing it from scratch.

(a) Full roll-up of 1,000,000 1m bars (100 instruments x 10,000 real UNITTEST/BTC minutes, scaled
per instrument) to 5m, 15m, 1h, 4h and 1d, three ways, each writing the same 308,500 bars into
market_bar itself (so each pays the same indexes, foreign key and triggers), from an empty start:
- product: `market.rollup.roll_up` (the cascade, upserting);
- sql_date_bin: one plain `INSERT ... SELECT date_bin(...) ... GROUP BY` per timeframe straight
  from the 1m bars, first/last by window functions;
- pandas_copy: COPY the 1m bars out, `groupby` per timeframe, binary COPY the results back.
Each is run twice, best time kept (the machine is shared). The product's baseline is the faster of
the two others.

(b) The incremental run after one new minute for 1,000 active instruments, each with the current
day already rolled up: the minute is written through the bar store (which queues it), then
`roll_up` is timed, five consecutive minutes, median reported. Goal: 200 ms, since it runs every
minute. `with_publish` adds what the beat task does after its commit: the changed bars at the live
edge handed to the alert rules, and broadcast over the configured channel layer to the feeds someone
watches: here every rolled-up timeframe of 20 instruments (100 groups, as if 100 charts were open),
each group joined by one channel standing in for a web server's live hub, and checked to receive
exactly its bar.
"""

from __future__ import annotations

import io
import os
import statistics
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench import BenchUnavailable, measurement

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "freqtrade" / "UNITTEST_BTC-1m.feather"
FULL_INSTRUMENTS = 100
FULL_MINUTES = 10_000
LIVE_INSTRUMENTS = 1_000
LIVE_HISTORY_MINUTES = 240
LIVE_RUNS = 5
WATCHED_INSTRUMENTS = 20
INCREMENTAL_GOAL_MS = 200.0
LATER = datetime(2030, 1, 1, tzinfo=UTC)
TARGETS = {"5m": "5 minutes", "15m": "15 minutes", "1h": "1 hour", "4h": "4 hours", "1d": "1 day"}
COLUMNS = "instrument_id, timeframe, time, open, high, low, close, volume, trades, vwap, final"


def run() -> Iterator[dict[str, Any]]:
    from django.db import connection

    if connection.vendor != "postgresql":
        raise BenchUnavailable("needs PostgreSQL: set DATABASE_URL=postgres://user@host:5432/anydb")
    parts = os.environ.get("BENCH_ROLLUP_PARTS", "full,incremental").split(",")
    if "full" in parts:
        yield from full_rollup()
    # The incremental lines move with the machine's load from one minute to the next: repeat them.
    rounds = int(os.environ.get("BENCH_ROLLUP_INCREMENTAL_ROUNDS", "1")) if "incremental" in parts else 0
    for round_number in range(rounds):
        yield from incremental_rollup(round_number)


# --- (a) full roll-up ----------------------------------------------------------------------------


def full_rollup() -> Iterator[dict[str, Any]]:
    from market.rollup import roll_up

    ids = make_instruments("full", FULL_INSTRUMENTS)
    load_real_minutes(ids, FULL_MINUTES)
    save_pending()
    variants: dict[str, Callable[[], object]] = {
        "sql_date_bin": sql_date_bin_rollup,
        "pandas_copy": pandas_copy_rollup,
        "product": lambda: roll_up(LATER, publish=False),
    }
    best: dict[str, float] = {}
    written: dict[str, int] = {}
    for _ in range(2):
        for name, action in variants.items():
            reset_rollup()
            best[name] = min(best.get(name, float("inf")), timed(action))
            written[name] = count_rolled_up_bars()
    if len(set(written.values())) != 1:
        raise AssertionError(f"the variants wrote different numbers of bars: {written}")
    yield measurement("rollup.full_1M.sql_date_bin", best["sql_date_bin"], "s")
    yield measurement("rollup.full_1M.pandas_copy", best["pandas_copy"], "s")
    yield measurement("rollup.full_1M.product", best["product"], "s", min(best["sql_date_bin"], best["pandas_copy"]))
    yield measurement("rollup.full_1M.bars_written", written["product"], "bars")
    empty_bars()


def load_real_minutes(instrument_ids: list[int], minutes: int) -> None:
    """`minutes` real 1m bars per instrument (their real gaps included), scaled per instrument."""
    from django.db import connection

    frame = pd.read_feather(SAMPLE).iloc[:minutes]
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO market_bar ({COLUMNS})
            SELECT i.id, '1m', s.time, s.open * f, s.high * f, s.low * f, s.close * f, s.volume, NULL, NULL, TRUE
            FROM unnest(%s::bigint[]) WITH ORDINALITY AS i(id, n)
            CROSS JOIN LATERAL (SELECT 1 + i.n / 100.0 AS f) AS scale
            CROSS JOIN unnest(%s::timestamptz[], %s::float8[], %s::float8[], %s::float8[], %s::float8[], %s::float8[])
                AS s(time, open, high, low, close, volume)
            """,
            [
                instrument_ids,
                frame["date"].dt.to_pydatetime().tolist(),
                *(frame[column].tolist() for column in ("open", "high", "low", "close", "volume")),
            ],
        )
        cursor.execute("ANALYZE market_bar")


def save_pending() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_pending")
        cursor.execute("CREATE TABLE bench_pending AS SELECT * FROM market_pendingrollup")


def reset_rollup() -> None:
    """Back to 1m bars only, the load's changes queued again, the table vacuumed."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM market_bar WHERE timeframe <> '1m'")
        cursor.execute("DELETE FROM market_pendingrollup")
        cursor.execute("INSERT INTO market_pendingrollup SELECT * FROM bench_pending")
        cursor.execute("VACUUM ANALYZE market_bar")


def sql_date_bin_rollup() -> None:
    """The plain version: every timeframe straight from the 1m bars, first/last by window functions."""
    from django.db import connection

    with connection.cursor() as cursor:
        for timeframe, step in TARGETS.items():
            cursor.execute(
                f"""
                INSERT INTO market_bar ({COLUMNS})
                SELECT instrument_id, %(timeframe)s, bucket, max(first_open), max(high), min(low), max(last_close),
                    sum(volume), NULL, NULL, bucket + %(step)s::interval <= now()
                FROM (
                    SELECT instrument_id, bucket, high, low, volume,
                        first_value(open) OVER w AS first_open, last_value(close) OVER w AS last_close
                    FROM (
                        SELECT *, date_bin(%(step)s::interval, time, TIMESTAMPTZ '1970-01-01') AS bucket
                        FROM market_bar WHERE timeframe = '1m'
                    ) AS binned
                    WINDOW w AS (PARTITION BY instrument_id, bucket ORDER BY time
                        ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
                ) AS ranked
                GROUP BY instrument_id, bucket
                """,
                {"timeframe": timeframe, "step": step},
            )


def pandas_copy_rollup() -> None:
    """The load-into-pandas version: COPY out, groupby per timeframe, binary COPY back."""
    from django.db import connection

    buffer = io.BytesIO()
    with connection.cursor() as cursor:
        query = (
            "COPY (SELECT instrument_id, extract(epoch FROM time)::bigint, open, high, low, close, volume"
            " FROM market_bar WHERE timeframe = '1m' ORDER BY instrument_id, time) TO STDOUT"
        )
        with cursor.cursor.copy(query) as copy:
            for block in copy:
                buffer.write(block)
    buffer.seek(0)
    names = ["instrument_id", "epoch", "open", "high", "low", "close", "volume"]
    frame = pd.read_csv(buffer, sep="\t", header=None, names=names)
    now = time.time()
    parts = []
    for timeframe, step in TARGETS.items():
        seconds = int(pd.Timedelta(step).total_seconds())
        bucket = frame["epoch"] - frame["epoch"] % seconds
        grouped = frame.groupby([frame["instrument_id"], bucket], sort=False).agg(
            open=("open", "first"),
            high=("high", "max"),
            low=("low", "min"),
            close=("close", "last"),
            volume=("volume", "sum"),
        )
        grouped = grouped.reset_index()
        grouped["timeframe"] = timeframe
        grouped["final"] = grouped["epoch"] + seconds <= now
        parts.append(grouped)
    bars = pd.concat(parts, ignore_index=True)
    times = pd.to_datetime(bars["epoch"], unit="s", utc=True).dt.to_pydatetime()
    rows = zip(
        bars["instrument_id"].tolist(),
        bars["timeframe"].tolist(),
        times.tolist(),
        *(bars[column].tolist() for column in ("open", "high", "low", "close", "volume", "final")),
        strict=True,
    )
    columns = "instrument_id, timeframe, time, open, high, low, close, volume, final"
    types = ["int8", "text", "timestamptz", "float8", "float8", "float8", "float8", "float8", "bool"]
    with (
        connection.cursor() as cursor,
        cursor.cursor.copy(f"COPY market_bar ({columns}) FROM STDIN (FORMAT BINARY)") as copy,
    ):
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)


def count_rolled_up_bars() -> int:
    from market.models import Bar

    return Bar.objects.exclude(timeframe="1m").count()


# --- (b) incremental run ---------------------------------------------------------------------------


def incremental_rollup(round_number: int = 0) -> Iterator[dict[str, Any]]:
    from asgiref.sync import async_to_sync

    from market.groups import bars_group
    from market.rollup import roll_up

    ids = make_instruments(f"live-{round_number}", LIVE_INSTRUMENTS)
    # The day's first 20 hours as 4h bars, the last 4 hours as 1m bars up to 23:54, all rolled up:
    # the next minutes touch a 5m bucket with 4 bars, and full 15m, 1h, 4h and 1d buckets above it.
    day = datetime(2024, 3, 1, tzinfo=UTC)
    load_day_history(ids, day)
    roll_up(LATER, publish=False)
    first_new = day + timedelta(minutes=24 * 60 - 6)
    quiet: list[float] = []
    loud: list[float] = []
    watched = [bars_group(i, timeframe) for i in ids[:WATCHED_INSTRUMENTS] for timeframe in TARGETS]
    for run_number in range(LIVE_RUNS * 2):
        minute = first_new + timedelta(minutes=run_number)
        write_minute(ids, minute)
        now = minute + timedelta(seconds=61)
        publish = run_number % 2 == 1
        channel = f"bench-rollup-watcher-{run_number}"  # a fresh one per run: nothing left over
        if publish:
            async_to_sync(join)(watched, channel)
        started = time.perf_counter()
        result = roll_up(now, publish=publish)
        elapsed = (time.perf_counter() - started) * 1000
        if result.written["5m"] != len(ids):
            raise AssertionError(f"expected {len(ids)} changed 5m bars, got {result.written}")
        if publish and (received := async_to_sync(leave)(watched, channel)) != len(watched):
            raise AssertionError(f"the {len(watched)} watched feeds received {received} bars")
        (loud if publish else quiet).append(elapsed)
    yield measurement(
        "rollup.incremental_1000_instruments.one_minute", statistics.median(quiet), "ms", INCREMENTAL_GOAL_MS
    )
    yield measurement(
        "rollup.incremental_1000_instruments.one_minute_with_publish",
        statistics.median(loud),
        "ms",
        INCREMENTAL_GOAL_MS,
    )
    empty_bars()


async def join(groups: list[str], channel: str) -> None:
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    for group in groups:
        await layer.group_add(group, channel)


async def leave(groups: list[str], channel: str) -> int:
    """Drain `channel` (a published bar per group is expected) and leave the groups: how many came."""
    import asyncio

    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    received = 0
    try:
        while received < len(groups):
            await asyncio.wait_for(layer.receive(channel), 5)
            received += 1
    except TimeoutError:
        pass
    for group in groups:
        await layer.group_discard(group, channel)
    return received


def load_day_history(instrument_ids: list[int], day: datetime) -> None:
    from django.db import connection

    rng = np.random.default_rng(7)
    with connection.cursor() as cursor:
        for hours in range(0, 20, 4):
            price = rng.uniform(1, 100)
            cursor.execute(
                f"INSERT INTO market_bar ({COLUMNS}) SELECT id, '4h', %s, %s, %s, %s, %s, 1000, NULL, NULL, TRUE"
                " FROM unnest(%s::bigint[]) AS id",
                [day + timedelta(hours=hours), price, price * 1.01, price * 0.99, price, instrument_ids],
            )
        start = day + timedelta(hours=20)
        cursor.execute(
            f"""
            INSERT INTO market_bar ({COLUMNS})
            SELECT id, '1m', %s + m * interval '1 minute', 50, 51, 49, 50.5, 10, 5, 50.1, TRUE
            FROM unnest(%s::bigint[]) AS id CROSS JOIN generate_series(0, %s - 7) AS m
            """,
            [start, instrument_ids, LIVE_HISTORY_MINUTES],
        )
        cursor.execute("ANALYZE market_bar")


def write_minute(instrument_ids: list[int], minute: datetime) -> None:
    """One new final 1m bar per instrument, through the bar store as the collector writes it."""
    from market.barstore import BarRow
    from market.services import store_bars

    store_bars(
        [BarRow(i, "1m", minute, 50.0, 52.0, 48.0, 51.0, 12.0, 6, 50.2, True) for i in instrument_ids], publish=False
    )


# --- shared ------------------------------------------------------------------------------------------


def make_instruments(prefix: str, count: int) -> list[int]:
    from market.models import Exchange, Instrument

    exchange, _ = Exchange.objects.get_or_create(code=f"bench-{prefix}", defaults={"name": "Bench"})
    instruments = Instrument.objects.bulk_create(
        Instrument(exchange=exchange, symbol=f"R{number}/USDT") for number in range(count)
    )
    return [instrument.id for instrument in instruments]


def timed(action: Callable[[], object]) -> float:
    """Seconds `action` takes in its own transaction, commit included."""
    from django.db import transaction

    started = time.perf_counter()
    with transaction.atomic():
        action()
    return time.perf_counter() - started


def empty_bars() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE market_bar, market_pendingrollup")
        cursor.execute("DROP TABLE IF EXISTS bench_pending")

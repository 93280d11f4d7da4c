"""Exports: one series of 1,000,000 stored 1m bars to CSV and Parquet through the product's export path
(`exports.streams.export_bytes`, what the streaming endpoint sends and the background job writes),
against what a quant would otherwise do, measured in the same run.

- CSV on PostgreSQL: the floor is PostgreSQL's own `COPY (SELECT the columns ...) TO STDOUT WITH CSV`
  read by psycopg (no formatting of ours, nothing done with the bytes). On SQLite: pandas `read_sql`
  of the same rows, then `to_csv`.
- Parquet: pandas `read_sql` of the same rows (a fresh psycopg or sqlite3 connection, without
  Django's adapters), then `to_parquet` (pyarrow, zstd, as ours).
- JSON Lines: ours only, against the CSV baseline (there is no standard tool to compare with).

Each variant runs in a forked child process, so that its peak memory is its own: the line
`<variant>.peak_rss_mib` is the child's peak resident memory minus what it had when it started. The
product's bytes are counted and dropped (as a socket would take them); the baselines write to
/dev/null. Rows/s is rows / wall time, best of BENCH_EXPORTS_RUNS runs (default 2; the pandas baselines, 3-10x
slower, once).
"""

from __future__ import annotations

import os
import pickle
import resource
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from bench import measurement

ROWS = int(os.environ.get("BENCH_EXPORTS_ROWS", "1000000"))
RUNS = int(os.environ.get("BENCH_EXPORTS_RUNS", "2"))
START = datetime(2022, 1, 1, tzinfo=UTC)
SELECT_COLUMNS = "time, open, high, low, close, volume, trades, vwap, final"


def run() -> Iterator[dict[str, Any]]:
    from django.db import connection

    instrument_id = load_series(ROWS)
    vendor = connection.vendor
    csv_baseline = copy_floor if vendor == "postgresql" else pandas_csv
    csv_baseline_name = "copy_floor" if vendor == "postgresql" else "pandas_read_sql_to_csv"
    variants: dict[str, Callable[[int], int]] = {
        f"csv.{csv_baseline_name}": csv_baseline,
        "csv.product": lambda pk: product("csv", pk),
        "parquet.pandas_read_sql_to_parquet": pandas_parquet,
        "parquet.product": lambda pk: product("parquet", pk),
        "json.product": lambda pk: product("json", pk),
    }
    # pandas takes 3-10x longer than the others: once is enough for it to be measured well, and keeps
    # the whole benchmark near a minute.
    once = {"parquet.pandas_read_sql_to_parquet", "csv.pandas_read_sql_to_csv"}
    best: dict[str, tuple[float, float, int]] = {}
    for round_number in range(RUNS):
        for name, variant in variants.items():
            if round_number and name in once:
                continue
            seconds, peak, rows = in_child(variant, instrument_id)
            if rows != ROWS:
                raise AssertionError(f"{name} exported {rows} rows, not {ROWS}")
            old = best.get(name)
            best[name] = (min(seconds, old[0]) if old else seconds, max(peak, old[1]) if old else peak, rows)
    rate = {name: ROWS / seconds for name, (seconds, _, _) in best.items()}
    csv_floor = rate[f"csv.{csv_baseline_name}"]
    yield measurement(f"exports.{vendor}.csv.{csv_baseline_name}", csv_floor, "rows/s")
    yield measurement(f"exports.{vendor}.csv.product.vs_{csv_baseline_name}", rate["csv.product"], "rows/s", csv_floor)
    parquet_baseline = rate["parquet.pandas_read_sql_to_parquet"]
    yield measurement(f"exports.{vendor}.parquet.pandas_read_sql_to_parquet", parquet_baseline, "rows/s")
    yield measurement(
        f"exports.{vendor}.parquet.product.vs_pandas", rate["parquet.product"], "rows/s", parquet_baseline
    )
    json_name = f"exports.{vendor}.json.product.vs_{csv_baseline_name}"
    yield measurement(json_name, rate["json.product"], "rows/s", csv_floor)
    for name, (_, peak, _) in best.items():
        yield measurement(f"exports.{vendor}.{name}.peak_rss_mib", peak, "MiB")


def load_series(rows: int) -> int:
    """One instrument with `rows` consecutive 1m bars of a geometric random walk (prices with all
    the digits arithmetic leaves), trades and vwap unknown on every tenth bar; through the bar store."""
    from market.barstore import upsert_bar_frame
    from market.models import Exchange, Instrument

    exchange, _ = Exchange.objects.get_or_create(code="benchx", defaults={"name": "Bench"})
    instrument = Instrument.objects.create(exchange=exchange, symbol=f"EXPORT{os.getpid()}/USDT")
    rng = np.random.default_rng(7)
    close = 20000 * np.exp(np.cumsum(rng.normal(0, 0.001, rows)))
    open_ = np.concatenate([[close[0]], close[:-1]])
    spread = np.abs(rng.normal(0, 0.0005, rows)) * close
    high, low = np.maximum(open_, close) + spread, np.minimum(open_, close) - spread
    unknown = np.arange(rows) % 10 == 0
    frame = pd.DataFrame(
        {
            "time": pd.date_range(START, periods=rows, freq="1min"),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": rng.exponential(3.0, rows),
            "trades": pd.array(np.where(unknown, 0, rng.integers(1, 500, rows)), dtype="Int64"),
            "vwap": np.where(unknown, np.nan, (high + low + close) / 3),
        }
    )
    frame.loc[unknown, "trades"] = pd.NA
    for start in range(0, rows, 250_000):
        upsert_bar_frame(frame.iloc[start : start + 250_000], instrument_id=instrument.pk, timeframe="1m")
    return int(instrument.pk)


# --- The variants: each returns the rows it exported ----------------------------------------------


def product(fmt: str, instrument_id: int) -> int:
    from exports.streams import export_bytes

    size = lines = 0
    tail = b""
    for piece in export_bytes(fmt, instrument_id, "1m", None, None):
        size += len(piece)
        lines += piece.count(b"\n")
        tail = piece
    if fmt == "parquet":
        return parquet_rows(tail)
    return lines - (fmt == "csv")


def parquet_rows(tail: bytes) -> int:
    """Rows in a Parquet file, from its last piece (the footer)."""
    import io

    import pyarrow.parquet as pq

    length = int.from_bytes(tail[-8:-4], "little")
    return int(pq.ParquetFile(io.BytesIO(b"PAR1" + tail[-(length + 8) :])).metadata.num_rows)


def copy_floor(instrument_id: int) -> int:
    from django.db import connection

    sql = (
        f"COPY (SELECT {SELECT_COLUMNS} FROM market_bar WHERE instrument_id = %s AND timeframe = '1m' "
        'ORDER BY "time") TO STDOUT WITH CSV'
    )
    rows = 0
    with connection.cursor() as cursor, cursor.copy(sql, [instrument_id]) as copy:
        for data in copy:
            rows += bytes(data).count(b"\n")
    return rows


def pandas_frame(instrument_id: int) -> pd.DataFrame:
    import warnings

    sql = f"SELECT {SELECT_COLUMNS} FROM market_bar WHERE instrument_id = {int(instrument_id)} AND timeframe = '1m' "
    sql += 'ORDER BY "time"'
    with raw_connection() as connection, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pandas prefers SQLAlchemy, which we do not install
        return pd.read_sql(sql, connection)


def pandas_csv(instrument_id: int) -> int:
    frame = pandas_frame(instrument_id)
    frame.to_csv(os.devnull, index=False)
    return len(frame)


def pandas_parquet(instrument_id: int) -> int:
    frame = pandas_frame(instrument_id)
    frame.to_parquet(os.devnull, compression="zstd", index=False)
    return len(frame)


def raw_connection() -> Any:
    """A DB-API connection of the driver alone, as a script would open it."""
    from django.db import connection

    params = connection.get_connection_params()
    if connection.vendor == "postgresql":
        import psycopg

        conninfo = params.pop("conninfo", "")
        params.pop("cursor_factory", None)
        params.pop("context", None)
        params.pop("prepare_threshold", None)
        return psycopg.connect(conninfo, **params)
    import sqlite3

    return sqlite3.connect(params["database"])


# --- Each variant alone in a child process -------------------------------------------------------------


def in_child(variant: Callable[[int], int], instrument_id: int) -> tuple[float, float, int]:
    """(seconds, peak RSS growth in MiB, rows) of `variant` run in a forked child."""
    from django.db import connections

    connections.close_all()  # the child opens its own
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(reader)
        result: Any
        try:
            before = current_rss_mib()
            started = time.perf_counter()
            rows = variant(instrument_id)
            seconds = time.perf_counter() - started
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
            result = (seconds, peak, rows)
        except BaseException as exc:  # reported to the parent, which raises it
            result = exc
        with os.fdopen(writer, "wb") as pipe:
            pickle.dump(result, pipe)
        os._exit(0)
    os.close(writer)
    with os.fdopen(reader, "rb") as pipe:
        result = pickle.load(pipe)
    os.waitpid(pid, 0)
    if isinstance(result, BaseException):
        raise result
    return result


def current_rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

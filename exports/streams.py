"""Stored bars read in chunks and turned into export bytes: what the streaming endpoint, the background
job and the command all use.

Never all rows at once. Two ways to read, by backend:

- **PostgreSQL**: one `COPY (SELECT ...) TO STDOUT`. For CSV the database writes the CSV itself, in
  exactly the writers' format (`exports.writers`: ISO times, floats as float8out writes them, which
  is the shortest text that reads back the same; `true`/`false`), so Python only passes bytes on.
  For JSON and Parquet the rows come in COPY's binary format with every column fixed-width (unknown
  trades as -1, unknown vwap as NaN: neither can be a stored value), which numpy reads as one record
  array per chunk: no Python object per row or value.
- **Anything else (SQLite)**: keyset pages over the primary key (`time > last ORDER BY time LIMIT n`),
  each a short query of its own, converted to columns.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import numpy as np
from django.db import connections

from exports.writers import CSV_HEADER, BarChunk, csv_chunks, json_lines_chunks, parquet_chunks
from market.models import Bar

CHUNK_ROWS = 50_000
# CSV bytes collected from COPY's per-row messages before they are passed on.
CSV_PIECE_BYTES = 256 * 1024

_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_COPY_HEADER_BYTES = len(_COPY_SIGNATURE) + 8  # flags and header extension length, both int32
_COPY_TRAILER = b"\xff\xff"
# One row of the binary COPY below: a field count, then per field its length and its value.
_COPY_ROW = np.dtype(
    [
        ("fields", ">i2"),
        ("time_len", ">i4"),
        ("time", ">i8"),
        *[
            item
            for name in ("open", "high", "low", "close", "volume")
            for item in ((f"{name}_len", ">i4"), (name, ">f8"))
        ],
        ("trades_len", ">i4"),
        ("trades", ">i4"),
        ("vwap_len", ">i4"),
        ("vwap", ">f8"),
        ("final_len", ">i4"),
        ("final", "u1"),
    ]
)


def export_bytes(
    fmt: str, instrument_id: int, timeframe: str, start: datetime | None, end: datetime | None
) -> Iterator[bytes]:
    """The export of bars [start, end) of one series in `fmt` (csv, json, parquet), piece by piece."""
    if fmt == "csv":
        if _vendor() == "postgresql":
            return copy_csv(instrument_id, timeframe, start, end)
        return csv_chunks(bar_chunks(instrument_id, timeframe, start, end))
    chunks = bar_chunks(instrument_id, timeframe, start, end)
    if fmt == "json":
        return json_lines_chunks(chunks)
    if fmt == "parquet":
        return parquet_chunks(chunks)
    raise ValueError(f"unknown export format {fmt!r}")


def bar_chunks(
    instrument_id: int, timeframe: str, start: datetime | None, end: datetime | None, chunk_rows: int = CHUNK_ROWS
) -> Iterator[BarChunk]:
    """Bars [start, end) of one series, oldest first, as columns of at most about `chunk_rows` bars."""
    if _vendor() == "postgresql":
        return copy_bar_chunks(instrument_id, timeframe, start, end, chunk_rows)
    return keyset_bar_chunks(instrument_id, timeframe, start, end, chunk_rows)


def count_bars(instrument_id: int, timeframe: str, start: datetime | None, end: datetime | None, at_most: int) -> int:
    """How many bars [start, end) holds, counting no further than `at_most` (an index range scan)."""
    where, params = _range_condition(instrument_id, timeframe, start, end)
    sql = f"SELECT count(*) FROM (SELECT 1 FROM {Bar._meta.db_table} WHERE {where} LIMIT %s) AS bounded"
    with _connection().cursor() as cursor:
        cursor.execute(sql, [*params, at_most])
        row = cursor.fetchone()
    return int(row[0]) if row else 0


# --- PostgreSQL: COPY --------------------------------------------------------------------------------

_CSV_SELECT = (
    """to_char("time" AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), """
    "open, high, low, close, volume, trades, vwap, final::text"
)
_BINARY_SELECT = (
    'CAST(EXTRACT(EPOCH FROM "time") AS bigint), open, high, low, close, volume, '
    "COALESCE(trades, -1), COALESCE(vwap, 'NaN'::float8), final"
)


def copy_csv(instrument_id: int, timeframe: str, start: datetime | None, end: datetime | None) -> Iterator[bytes]:
    """The CSV export written by PostgreSQL: header and rows as `exports.writers.csv_chunks` writes
    them, passed on in pieces of about CSV_PIECE_BYTES."""
    yield CSV_HEADER
    with _copy_out(_CSV_SELECT, "(FORMAT CSV)", instrument_id, timeframe, start, end) as copy:
        # PostgreSQL sends a message per row: copied into one growing buffer (keeping each message's
        # object alive in a list to join later cost a microsecond per row more, most of our CPU).
        buffer = bytearray()
        for data in copy:
            buffer += data
            if len(buffer) >= CSV_PIECE_BYTES:
                yield bytes(buffer)
                buffer.clear()
        if buffer:
            yield bytes(buffer)


def copy_bar_chunks(
    instrument_id: int, timeframe: str, start: datetime | None, end: datetime | None, chunk_rows: int = CHUNK_ROWS
) -> Iterator[BarChunk]:
    """Bars by binary COPY, parsed as fixed-width records by numpy, about `chunk_rows` per chunk."""
    wanted = chunk_rows * _COPY_ROW.itemsize
    with _copy_out(_BINARY_SELECT, "(FORMAT BINARY)", instrument_id, timeframe, start, end) as copy:
        buffer = bytearray()
        header_left = _COPY_HEADER_BYTES
        for data in copy:
            buffer += data
            if header_left:
                if len(buffer) < header_left:
                    continue
                if not buffer.startswith(_COPY_SIGNATURE):
                    raise ValueError("not PostgreSQL's binary COPY format")
                del buffer[:header_left]
                header_left = 0
            if len(buffer) >= wanted:
                yield _records_to_chunk(buffer, len(buffer) // _COPY_ROW.itemsize)
        if buffer.endswith(_COPY_TRAILER):
            del buffer[-len(_COPY_TRAILER) :]
        if len(buffer) % _COPY_ROW.itemsize:
            raise ValueError("binary COPY ended inside a row")
        if buffer:
            yield _records_to_chunk(buffer, len(buffer) // _COPY_ROW.itemsize)


def _records_to_chunk(buffer: bytearray, rows: int) -> BarChunk:
    """The first `rows` records of `buffer` as a chunk (copied out), removed from the buffer."""
    records = np.frombuffer(buffer, dtype=_COPY_ROW, count=rows)
    if rows and not (records["fields"] == 9).all():
        raise ValueError("binary COPY rows without the nine expected fields")
    chunk = BarChunk(
        time=records["time"].astype(np.int64),
        open=records["open"].astype(np.float64),
        high=records["high"].astype(np.float64),
        low=records["low"].astype(np.float64),
        close=records["close"].astype(np.float64),
        volume=records["volume"].astype(np.float64),
        trades=records["trades"].astype(np.int64),
        vwap=records["vwap"].astype(np.float64),
        final=records["final"].astype(bool),
    )
    del records  # the buffer cannot be resized while a view of it exists
    del buffer[: rows * _COPY_ROW.itemsize]
    return chunk


@contextmanager
def _copy_out(
    columns: str,
    options: str,
    instrument_id: int,
    timeframe: str,
    start: datetime | None,
    end: datetime | None,
) -> Iterator[Any]:
    """psycopg's Copy of `COPY (SELECT columns FROM the series [start, end) ORDER BY time) TO STDOUT
    options`. Left before the end (the client went away), psycopg cancels the COPY, so the connection
    is usable again (test_round_trip checks it)."""
    where, params = _range_condition(instrument_id, timeframe, start, end)
    sql = f'COPY (SELECT {columns} FROM {Bar._meta.db_table} WHERE {where} ORDER BY "time") TO STDOUT {options}'
    with _connection().cursor() as cursor, cursor.copy(sql, params) as copy:
        yield copy


# --- Other backends: keyset pages ------------------------------------------------------------------

_EPOCH_SQL = {"postgresql": 'CAST(EXTRACT(EPOCH FROM "time") AS bigint)', "sqlite": 'unixepoch("time")'}


def keyset_bar_chunks(
    instrument_id: int, timeframe: str, start: datetime | None, end: datetime | None, chunk_rows: int = CHUNK_ROWS
) -> Iterator[BarChunk]:
    """Bars in pages of `chunk_rows`, each page a query starting after the last bar of the one before
    (the primary key's order): no cursor held open between pages, no OFFSET."""
    connection = _connection()
    columns = ", ".join((_EPOCH_SQL[connection.vendor], "open, high, low, close, volume, trades, vwap, final"))
    after = start
    first = True
    while True:
        where, params = _range_condition(instrument_id, timeframe, after, end, start_inclusive=first)
        sql = f'SELECT {columns} FROM {Bar._meta.db_table} WHERE {where} ORDER BY "time" LIMIT %s'
        with connection.cursor() as cursor:
            cursor.execute(sql, [*params, chunk_rows])
            rows = cursor.fetchall()
        if not rows:
            return
        yield BarChunk.from_rows(rows)
        if len(rows) < chunk_rows:
            return
        after, first = datetime.fromtimestamp(rows[-1][0], UTC), False


def _range_condition(
    instrument_id: int,
    timeframe: str,
    start: datetime | None,
    end: datetime | None,
    *,
    start_inclusive: bool = True,
) -> tuple[str, list[Any]]:
    connection = _connection()
    conditions = ["instrument_id = %s", "timeframe = %s"]
    params: list[Any] = [instrument_id, timeframe]
    for operator, moment in ((">=" if start_inclusive else ">", start), ("<", end)):
        if moment is not None:
            conditions.append(f'"time" {operator} %s')
            params.append(connection.ops.adapt_datetimefield_value(moment))
    return " AND ".join(conditions), params


def _connection() -> Any:
    return connections[Bar.objects.db]


def _vendor() -> str:
    return str(_connection().vendor)

"""Bars to CSV, JSON Lines and Parquet bytes, chunk by chunk. Pure: no Django, no clock, no settings.

The input is an iterable of `BarChunk`s (columns of a few thousand bars, oldest first); the output
is produced as the chunks arrive, so an export of any length holds one chunk in memory at a time.

Numbers are written exactly as stored. Prices and volumes are float64 (docs/barstore.md): CSV and
JSON write each as the shortest decimal text that reads back as the same float64 (Python's `repr`,
which is also what orjson writes), so `float(text) == stored` for every value; Parquet stores the
float64 itself. Times are the bars' UTC open times, whole seconds (every timeframe is whole
minutes): `2024-01-01T00:00:00Z` in text, `timestamp[us, UTC]` in Parquet.

CSV floats drop a trailing `.0` (`40000`, not `40000.0`), as PostgreSQL writes them: the CSV made
here and the one PostgreSQL's COPY makes (`exports.streams`) are then the same bytes, except for
values from 1e15 to 1e16, which PostgreSQL writes with an exponent (`1.5e+15`) and Python in full
(the same number either way).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

COLUMNS = ("time", "open", "high", "low", "close", "volume", "trades", "vwap", "final")
FORMATS = ("csv", "json", "parquet")
CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
}
EXTENSIONS = {"csv": "csv", "json": "jsonl", "parquet": "parquet"}
CSV_HEADER = (",".join(COLUMNS) + "\n").encode()

PARQUET_SCHEMA = pa.schema(
    [
        pa.field("time", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("open", pa.float64(), nullable=False),
        pa.field("high", pa.float64(), nullable=False),
        pa.field("low", pa.float64(), nullable=False),
        pa.field("close", pa.float64(), nullable=False),
        pa.field("volume", pa.float64(), nullable=False),
        pa.field("trades", pa.int32()),
        pa.field("vwap", pa.float64()),
        pa.field("final", pa.bool_(), nullable=False),
    ]
)


Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


@dataclass(frozen=True)
class BarChunk:
    """Bars of one series as columns, oldest first.

    `time`: int64 UTC epoch seconds of each bar's open. `trades`: int64 with -1 where unknown;
    `vwap`: float64 with NaN where unknown (a stored bar never has a negative trade count or a NaN
    vwap, so neither marker can be mistaken for a value).
    """

    time: Ints
    open: Floats
    high: Floats
    low: Floats
    close: Floats
    volume: Floats
    trades: Ints
    vwap: Floats
    final: npt.NDArray[np.bool_]

    def __len__(self) -> int:
        return len(self.time)

    @classmethod
    def from_rows(cls, rows: list[tuple[Any, ...]]) -> BarChunk:
        """From rows in the order of COLUMNS, time as epoch seconds, None for unknown trades/vwap."""
        if not rows:
            return cls.empty()
        time, open_, high, low, close, volume, trades, vwap, final = zip(*rows, strict=True)
        return cls(
            np.array(time, dtype=np.int64),
            np.array(open_, dtype=np.float64),
            np.array(high, dtype=np.float64),
            np.array(low, dtype=np.float64),
            np.array(close, dtype=np.float64),
            np.array(volume, dtype=np.float64),
            np.array([-1 if count is None else count for count in trades], dtype=np.int64),
            np.array(vwap, dtype=np.float64),  # None becomes NaN
            np.array(final, dtype=bool),
        )

    @classmethod
    def empty(cls) -> BarChunk:
        floats = np.empty(0, dtype=np.float64)
        return cls(
            np.empty(0, dtype=np.int64),
            floats,
            floats,
            floats,
            floats,
            floats,
            np.empty(0, np.int64),
            floats,
            np.empty(0, bool),
        )


def iso_times(epoch_seconds: Ints) -> list[str]:
    """`2024-01-01T00:00:00Z` for each epoch second, vectorized (no datetime per row)."""
    text = np.datetime_as_string(epoch_seconds.astype("datetime64[s]"), unit="s")
    return [moment + "Z" for moment in text.tolist()]


def _optional_counts(trades: Ints) -> list[int | None]:
    return [None if count < 0 else count for count in trades.tolist()]


def _optional_floats(values: Floats) -> list[float | None]:
    return [None if value != value else value for value in values.tolist()]  # NaN != NaN


# --- CSV -------------------------------------------------------------------------------------------


def csv_chunks(chunks: Iterable[BarChunk]) -> Iterator[bytes]:
    """The header, then one bytes object per non-empty chunk. Unknown trades/vwap are empty cells;
    final is `true`/`false`."""
    yield CSV_HEADER
    for chunk in chunks:
        if len(chunk):
            yield csv_body(chunk)


def _text_rows(chunk: BarChunk) -> Iterator[tuple[Any, ...]]:
    """The chunk's rows for the text formats, in the order of COLUMNS: ISO times, plain floats, None
    for an unknown trade count or vwap."""
    return zip(
        iso_times(chunk.time),
        chunk.open.tolist(),
        chunk.high.tolist(),
        chunk.low.tolist(),
        chunk.close.tolist(),
        chunk.volume.tolist(),
        _optional_counts(chunk.trades),
        _optional_floats(chunk.vwap),
        chunk.final.tolist(),
        strict=True,
    )


def csv_body(chunk: BarChunk) -> bytes:
    lines = [
        f"{t},{o!r},{h!r},{lo!r},{c!r},{v!r},{'' if n is None else n},{'' if w is None else repr(w)},"
        f"{'true' if f else 'false'}\n"
        for t, o, h, lo, c, v, n, w, f in _text_rows(chunk)
    ]
    # repr ends whole floats in ".0"; every float cell is followed by a comma (final is last), and no
    # other cell can hold ".0,", so one replace over the chunk writes them as PostgreSQL does.
    return "".join(lines).replace(".0,", ",").encode()


# --- JSON Lines --------------------------------------------------------------------------------------


def json_lines_chunks(chunks: Iterable[BarChunk]) -> Iterator[bytes]:
    """One JSON object per line (JSON Lines, `application/x-ndjson`), keys in the order of COLUMNS;
    unknown trades/vwap are null. One bytes object per non-empty chunk."""
    for chunk in chunks:
        if len(chunk):
            yield json_lines_body(chunk)


def json_lines_body(chunk: BarChunk) -> bytes:
    objects = [
        {"time": t, "open": o, "high": h, "low": lo, "close": c, "volume": v, "trades": n, "vwap": w, "final": f}
        for t, o, h, lo, c, v, n, w, f in _text_rows(chunk)
    ]
    # One orjson call for the chunk, its array then cut into lines: `},{` occurs only between two
    # objects, since no value is an object and the only strings are times. (An orjson call per row
    # was slower, and each result kept a 4 KB buffer: 200 MB for a chunk of 50,000 bars.)
    array = orjson.dumps(objects)
    return array[1:-1].replace(b"},{", b"}\n{") + b"\n"


# --- Parquet -------------------------------------------------------------------------------------


def arrow_table(chunk: BarChunk) -> pa.Table:
    """One chunk as an Arrow table of PARQUET_SCHEMA, built from the columns without copying rows."""
    return pa.Table.from_arrays(
        [
            pa.array(chunk.time * 1_000_000, type=PARQUET_SCHEMA.field("time").type),
            pa.array(chunk.open, type=pa.float64()),
            pa.array(chunk.high, type=pa.float64()),
            pa.array(chunk.low, type=pa.float64()),
            pa.array(chunk.close, type=pa.float64()),
            pa.array(chunk.volume, type=pa.float64()),
            pa.array(chunk.trades, type=pa.int32(), mask=chunk.trades < 0),
            pa.array(chunk.vwap, type=pa.float64(), mask=np.isnan(chunk.vwap)),
            pa.array(chunk.final, type=pa.bool_()),
        ],
        schema=PARQUET_SCHEMA,
    )


def write_parquet(chunks: Iterable[BarChunk], file: IO[bytes] | str) -> None:
    """Write the chunks to `file` as Parquet, one row group per non-empty chunk (zstd)."""
    with pq.ParquetWriter(file, PARQUET_SCHEMA, compression="zstd") as writer:
        for chunk in chunks:
            if len(chunk):
                writer.write_table(arrow_table(chunk))


def parquet_chunks(chunks: Iterable[BarChunk]) -> Iterator[bytes]:
    """Parquet bytes as they are written: one piece per row group, then the footer.

    Writing Parquet needs no seeking (the metadata is a footer written last, the row groups before it
    in order), so a file can go out while it is being made; only reading it needs the whole file.
    """
    sink = _DrainableSink()
    with pq.ParquetWriter(sink, PARQUET_SCHEMA, compression="zstd") as writer:
        for chunk in chunks:
            if len(chunk):
                writer.write_table(arrow_table(chunk))
                if piece := sink.drain():
                    yield piece
    yield sink.drain()


class _DrainableSink:
    """A write-only file that keeps what was written until drained (pyarrow asks for tell())."""

    closed = False

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._position = 0

    def write(self, data: bytes) -> int:
        self._buffer += data
        self._position += len(data)
        return len(data)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def drain(self) -> bytes:
        data = bytes(self._buffer)
        self._buffer.clear()
        return data

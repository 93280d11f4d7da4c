"""The bar store: idempotent bulk upsert of bars into `market_bar`.

Every batch goes through the same steps: convert to columns (numpy), check every bar against the
bar invariants (raising `InvalidBars` before the database is touched), resolve duplicate keys
inside the batch (the last occurrence wins), then write. Writing a bar that is already stored with
the same values writes nothing; a bar with other values replaces the stored one.

PostgreSQL: bars after the newest stored bar of their series are appended by binary COPY straight
into the table; the others go by binary COPY into a session-local staging table and one
`INSERT ... ON CONFLICT DO UPDATE` that skips identical bars. SQLite: a plain upsert per bar.
docs/barstore.md has the design and the measured numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import pandas as pd
from django.db import IntegrityError, connection, transaction
from django.db.backends.utils import CursorWrapper
from psycopg import errors as pg_errors

from market.models import Bar, Instrument
from market.timeframes import TIMEFRAMES

type BarKey = tuple[int, str, int]


class BarRow(NamedTuple):
    instrument_id: int
    timeframe: str
    time: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float
    trades: int | None
    vwap: float | None
    final: bool


@dataclass(frozen=True, slots=True)
class UpsertResult:
    """What a write did. inserted + updated + unchanged is the number of bars given; a bar that a
    later bar with the same key in the same batch superseded counts as unchanged (it wrote nothing)."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    # (instrument_id, timeframe, open time in µs since the epoch) of every bar written, when asked
    # for: the live path publishes only these, so re-storing an unchanged bar announces nothing.
    written: frozenset[BarKey] = frozenset()

    def wrote(self, row: BarRow) -> bool:
        return (row.instrument_id, row.timeframe, (row.time - _UNIX_EPOCH) // _MICROSECOND) in self.written


class InvalidBars(ValueError):
    """A batch refused because some of its bars break the bar invariants; nothing was written."""

    MAX_LISTED = 10

    def __init__(self, problems: Sequence[str], offending: int, total: int) -> None:
        self.problems = tuple(problems[: self.MAX_LISTED])
        self.offending, self.total = offending, total
        listed = "; ".join(self.problems)
        more = f"; and {offending - len(self.problems)} more" if offending > len(self.problems) else ""
        super().__init__(f"{offending} of {total} bars rejected, nothing written: {listed}{more}")

    def __reduce__(self) -> tuple[type[InvalidBars], tuple[tuple[str, ...], int, int]]:
        return (type(self), (self.problems, self.offending, self.total))  # so that it pickles (Celery)


# --- Columns: the working form of a batch ---------------------------------------------------------

TIMEFRAME_NAMES: tuple[str, ...] = tuple(TIMEFRAMES)
_TIMEFRAME_CODES = {name: code for code, name in enumerate(TIMEFRAME_NAMES)}
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_NO_TIME = np.iinfo(np.int64).min  # what pandas' NaT becomes as an integer
_INT4_MAX = 2**31 - 1

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class BarColumns:
    """A batch of bars as equally long numpy columns. `trades` and `vwap` are NaN where unknown,
    because a float64 column holds both an int4 and "missing" without an object array."""

    instrument_id: Ints
    timeframe: npt.NDArray[np.int8]  # index into TIMEFRAME_NAMES
    time_us: Ints  # bar open time, microseconds since the Unix epoch, UTC
    open: Floats
    high: Floats
    low: Floats
    close: Floats
    volume: Floats
    trades: Floats
    vwap: Floats
    final: npt.NDArray[np.bool_]

    def __len__(self) -> int:
        return len(self.time_us)

    def take(self, index: npt.NDArray[np.intp] | npt.NDArray[np.bool_] | slice) -> BarColumns:
        return BarColumns(*(getattr(self, field.name)[index] for field in fields(self)))

    def describe(self, position: int) -> str:
        """One bar in words, for error messages."""
        code, time_us = int(self.timeframe[position]), int(self.time_us[position])
        timeframe = TIMEFRAME_NAMES[code] if code >= 0 else "?"
        time = "no time" if time_us == _NO_TIME else (_UNIX_EPOCH + time_us * _MICROSECOND).isoformat()
        values = " ".join(f"{name}={float(getattr(self, name)[position])!r}" for name in _PRICE_VOLUME)
        return f"bar {position} (instrument {self.instrument_id[position]} {timeframe} {time}; {values})"


_PRICE_VOLUME = ("open", "high", "low", "close", "volume")


def columns_from_rows(rows: Sequence[BarRow]) -> BarColumns:
    count = len(rows)
    if count == 0:
        return _empty_columns()
    instrument_id, timeframe, time, open_, high, low, close, volume, trades, vwap, final = zip(*rows, strict=True)
    return BarColumns(
        instrument_id=np.array(instrument_id, dtype=np.int64),
        timeframe=_timeframe_codes(pd.Series(timeframe, dtype=object)),
        time_us=_microseconds(time),
        open=np.array(open_, dtype=np.float64),
        high=np.array(high, dtype=np.float64),
        low=np.array(low, dtype=np.float64),
        close=np.array(close, dtype=np.float64),
        volume=np.array(volume, dtype=np.float64),
        trades=np.array(trades, dtype=np.float64),  # None becomes NaN
        vwap=np.array(vwap, dtype=np.float64),
        final=np.array(final, dtype=np.bool_),
    )


def columns_from_frame(
    frame: pd.DataFrame, *, instrument_id: int | None = None, timeframe: str | None = None
) -> BarColumns:
    """Columns from a DataFrame with `time` (timezone-aware), open, high, low, close, volume and
    optionally trades, vwap, final; instrument_id and timeframe as columns or given for all rows."""
    count = len(frame)
    required = {"time", *_PRICE_VOLUME}
    required |= {"instrument_id"} if instrument_id is None else set()
    required |= {"timeframe"} if timeframe is None else set()
    if missing := required - set(frame.columns):
        raise ValueError(f"bar frame lacks columns: {', '.join(sorted(missing))}")
    names = frame["timeframe"] if timeframe is None else pd.Series([timeframe], dtype=object).repeat(count)
    ids = frame["instrument_id"].to_numpy(np.int64) if instrument_id is None else np.full(count, instrument_id)
    return BarColumns(
        instrument_id=ids.astype(np.int64, copy=False),
        timeframe=_timeframe_codes(names),
        time_us=_frame_microseconds(frame["time"]),
        **{name: _float_column(frame, name) for name in (*_PRICE_VOLUME, "trades", "vwap")},
        final=frame["final"].to_numpy(np.bool_) if "final" in frame.columns else np.ones(count, dtype=np.bool_),
    )


def _empty_columns() -> BarColumns:
    kinds = {"instrument_id": np.int64, "timeframe": np.int8, "time_us": np.int64, "final": np.bool_}
    return BarColumns(*(np.empty(0, dtype=kinds.get(field.name, np.float64)) for field in fields(BarColumns)))


def _float_column(frame: pd.DataFrame, name: str) -> Floats:
    if name not in frame.columns:
        return np.full(len(frame), np.nan)
    return frame[name].to_numpy(np.float64, na_value=np.nan)


def _microseconds(times: Sequence[datetime]) -> Ints:
    try:
        return np.fromiter(((time - _UNIX_EPOCH) // _MICROSECOND for time in times), np.int64, len(times))
    except TypeError:  # a naive datetime (or no datetime at all) cannot be subtracted from an aware one
        naive = [f"bar {pos} ({time!r})" for pos, time in enumerate(times) if getattr(time, "tzinfo", None) is None]
        problems = [f"{bar}: time must be a timezone-aware datetime" for bar in naive]
        raise InvalidBars(problems, offending=len(naive), total=len(times)) from None


def _frame_microseconds(times: pd.Series) -> Ints:
    if not isinstance(times.dtype, pd.DatetimeTZDtype):
        problem = f"column time is {times.dtype}, it must be timezone-aware (e.g. .dt.tz_localize('UTC'))"
        raise InvalidBars([problem], offending=len(times), total=len(times))
    utc = times.dt.tz_convert(UTC).dt.tz_localize(None)
    return utc.to_numpy("datetime64[us]").view(np.int64)


def _timeframe_codes(names: pd.Series) -> npt.NDArray[np.int8]:
    """Timeframe names as indexes into TIMEFRAME_NAMES; an unknown name rejects the batch."""
    positions, distinct = pd.factorize(names, use_na_sentinel=False)  # hashing: fast for few distinct names
    codes = np.array([_TIMEFRAME_CODES.get(name, -1) for name in distinct], dtype=np.int8)[positions]
    unknown = np.flatnonzero(codes < 0)
    if len(unknown):
        known = ", ".join(TIMEFRAME_NAMES)
        problems = [
            f"bar {pos}: unknown timeframe {distinct[positions[pos]]!r} (known: {known})"
            for pos in unknown[: InvalidBars.MAX_LISTED]
        ]
        raise InvalidBars(problems, offending=len(unknown), total=len(codes))
    return codes


# --- Checks and duplicate resolution (pure, vectorized) ------------------------------------------

# Mirrors the CHECK constraints on market_bar (which stay the last line of defence) plus what they
# miss: PostgreSQL sorts NaN above every number, so a NaN or infinite price can pass `low <= high`,
# and trades must fit an int4. Each rule marks the bars that break it; the comparisons are written
# so that NaN counts as broken.
_RULES: tuple[tuple[str, Callable[[BarColumns], npt.NDArray[np.bool_]]], ...] = (
    ("time is missing", lambda c: c.time_us == _NO_TIME),
    ("prices and volume must be finite", lambda c: ~_all_finite(c.open, c.high, c.low, c.close, c.volume)),
    ("low must be above 0", lambda c: ~(c.low > 0)),
    ("high is below low", lambda c: ~(c.low <= c.high)),
    ("open is outside [low, high]", lambda c: ~((c.low <= c.open) & (c.open <= c.high))),
    ("close is outside [low, high]", lambda c: ~((c.low <= c.close) & (c.close <= c.high))),
    ("volume is negative", lambda c: c.volume < 0),
    ("trades must be a whole number from 0 to 2**31-1", lambda c: ~_valid_trades(c.trades)),
    ("vwap must be finite", lambda c: np.isinf(c.vwap)),
    ("instrument id must be positive", lambda c: c.instrument_id <= 0),
)


def _all_finite(*columns: Floats) -> npt.NDArray[np.bool_]:
    finite = np.ones(len(columns[0]), dtype=np.bool_)
    for column in columns:
        finite &= np.isfinite(column)
    return finite


def _valid_trades(trades: Floats) -> npt.NDArray[np.bool_]:
    with np.errstate(invalid="ignore"):
        return np.isnan(trades) | ((trades >= 0) & (trades <= _INT4_MAX) & (np.floor(trades) == trades))


def reject_invalid(batch: BarColumns) -> None:
    """Raise InvalidBars naming the offending bars, if any bar breaks a rule."""
    broken = {reason: rule(batch) for reason, rule in _RULES}
    offending = np.flatnonzero(np.any(list(broken.values()), axis=0))
    if len(offending) == 0:
        return
    problems = [
        f"{batch.describe(pos)}: {', '.join(reason for reason, mask in broken.items() if mask[pos])}"
        for pos in offending[: InvalidBars.MAX_LISTED]
    ]
    raise InvalidBars(problems, offending=len(offending), total=len(batch))


def latest_wins(batch: BarColumns) -> BarColumns:
    """The batch sorted by (instrument, timeframe, time), one bar per key: the last one given."""
    keys = (batch.instrument_id, batch.timeframe, batch.time_us)
    if not _strictly_increasing(*keys):  # already sorted and unique is the common case: skip the sort
        order = np.lexsort(keys[::-1])  # stable, so equal keys keep their input order
        batch = batch.take(order)
        keys = (batch.instrument_id, batch.timeframe, batch.time_us)
        last_of_key = np.append(np.any([key[1:] != key[:-1] for key in keys], axis=0), True)
        batch = batch.take(last_of_key)
    return batch


def _strictly_increasing(*keys: npt.NDArray[np.integer]) -> bool:
    """Whether rows ordered by the keys (first key most significant) are strictly increasing."""
    if len(keys[0]) < 2:
        return True
    greater = np.zeros(len(keys[0]) - 1, dtype=np.bool_)
    equal = np.ones(len(keys[0]) - 1, dtype=np.bool_)
    for key in keys:
        greater |= equal & (key[1:] > key[:-1])
        equal &= key[1:] == key[:-1]
    return bool(greater.all())


def series_bounds(batch: BarColumns) -> tuple[Ints, Ints]:
    """For a sorted batch: where each (instrument, timeframe) series starts, and its length."""
    ids, codes = batch.instrument_id, batch.timeframe
    starts = np.flatnonzero(np.append(True, (ids[1:] != ids[:-1]) | (codes[1:] != codes[:-1])))
    return starts, np.diff(np.append(starts, len(batch)))


# --- Entry points ---------------------------------------------------------------------------------


def upsert_bars(rows: Sequence[BarRow], *, report_written: bool = False) -> UpsertResult:
    """Insert new bars and replace changed ones; identical bars are left alone. All or nothing.
    With `report_written`, the result names the bars written (`UpsertResult.written`)."""
    return _store(columns_from_rows(rows), report_written=report_written)


def upsert_bar_frame(
    frame: pd.DataFrame, *, instrument_id: int | None = None, timeframe: str | None = None
) -> UpsertResult:
    """`upsert_bars` for columnar input (file imports): see `columns_from_frame` for the shape."""
    return _store(columns_from_frame(frame, instrument_id=instrument_id, timeframe=timeframe))


def _store(batch: BarColumns, *, report_written: bool = False) -> UpsertResult:
    """Check everything, then write in one transaction (a savepoint inside the caller's)."""
    given = len(batch)
    if given == 0:
        return UpsertResult()
    reject_invalid(batch)
    if connection.vendor not in ("postgresql", "sqlite"):
        raise NotImplementedError(f"the bar store supports PostgreSQL and SQLite, not {connection.vendor}")
    if connection.vendor == "sqlite":
        _reject_unknown_instruments(batch, _stored_instrument_ids(batch))
    unique = latest_wins(batch)
    try:
        with transaction.atomic():
            if connection.vendor == "postgresql":
                written = _upsert_postgresql(unique, report_written)
            else:
                written = _upsert_sqlite(unique)
    except _UnknownInstruments as refused:  # found by PostgreSQL's first query, before any write
        _reject_unknown_instruments(batch, refused.known)
    return UpsertResult(
        inserted=written.inserted,
        updated=written.updated,
        unchanged=given - written.inserted - written.updated,
        written=frozenset(written.keys) if report_written else frozenset(),
    )


@dataclass(slots=True)
class _Written:
    inserted: int = 0
    updated: int = 0
    keys: list[BarKey] = field(default_factory=list)

    def add(self, other: _Written) -> None:
        self.inserted += other.inserted
        self.updated += other.updated
        self.keys.extend(other.keys)


def _keys(batch: BarColumns) -> list[BarKey]:
    names = [TIMEFRAME_NAMES[code] for code in batch.timeframe.tolist()]
    return list(zip(batch.instrument_id.tolist(), names, batch.time_us.tolist(), strict=True))


class _UnknownInstruments(Exception):
    def __init__(self, known: set[int]) -> None:
        self.known = known


def _stored_instrument_ids(batch: BarColumns) -> set[int]:
    wanted = set(pd.unique(batch.instrument_id).tolist())
    return set(Instrument.objects.filter(id__in=wanted).values_list("id", flat=True))


def _reject_unknown_instruments(batch: BarColumns, known: set[int]) -> None:
    """Raise InvalidBars naming the bars (by their position as given) of instruments not in `known`."""
    unknown = set(pd.unique(batch.instrument_id).tolist()) - known
    if unknown:
        offending = np.flatnonzero(np.isin(batch.instrument_id, list(unknown)))
        problems = [f"{batch.describe(pos)}: no such instrument" for pos in offending[: InvalidBars.MAX_LISTED]]
        raise InvalidBars(problems, offending=len(offending), total=len(batch))


# --- PostgreSQL -----------------------------------------------------------------------------------

_TABLE = Bar._meta.db_table
_COLUMNS = ("instrument_id", "timeframe", "time", "open", "high", "low", "close", "volume", "trades", "vwap", "final")
_VALUES = _COLUMNS[3:]  # what a write may change; the rest is the key
_COLUMN_LIST = ", ".join(f'"{name}"' for name in _COLUMNS)
_STAGING = "barstore_staging"


def _upsert_postgresql(batch: BarColumns, report_written: bool) -> _Written:
    starts, lengths = series_bounds(batch)
    written = _Written()
    with connection.cursor() as cursor:
        newest = np.repeat(_newest_stored_times(cursor, batch, starts), lengths)
        after_newest = batch.time_us > newest
        new_bars = batch if after_newest.all() else batch.take(after_newest)
        if after_newest.any() and _append(cursor, new_bars):
            written.inserted = len(new_bars)
            written.keys = _keys(new_bars) if report_written else []
            batch = batch.take(~after_newest)
        if len(batch):
            written.add(_upsert_via_staging(cursor, batch, report_written))
    return written


def _newest_stored_times(cursor: CursorWrapper, batch: BarColumns, starts: Ints) -> Ints:
    """Per series of the batch, the open time of its newest stored bar (µs), or the smallest int64.
    One query; each max() is one descent of the primary key index. The same query asks whether the
    series' instrument exists (no database foreign key does, see models.Bar): one round trip less
    per batch. Raises _UnknownInstruments if one does not."""
    cursor.execute(
        f"""SELECT EXISTS (SELECT FROM {Instrument._meta.db_table} AS i WHERE i.id = s.instrument_id),
                   (SELECT (extract(epoch FROM max(b."time")) * 1000000)::bigint FROM {_TABLE} AS b
                    WHERE b.instrument_id = s.instrument_id AND b.timeframe = s.timeframe)
            FROM unnest(%s::bigint[], %s::text[]) WITH ORDINALITY AS s(instrument_id, timeframe, position)
            ORDER BY s.position""",
        [batch.instrument_id[starts].tolist(), [TIMEFRAME_NAMES[code] for code in batch.timeframe[starts]]],
    )
    rows = cursor.fetchall()
    if not all(exists for exists, _ in rows):
        raise _UnknownInstruments(
            {int(batch.instrument_id[start]) for start, (exists, _) in zip(starts, rows, strict=True) if exists}
        )
    return np.array([_NO_TIME if newest is None else newest for _, newest in rows], dtype=np.int64)


def _append(cursor: CursorWrapper, batch: BarColumns) -> bool:
    """COPY bars that are newer than anything stored straight into the table. False if a concurrent
    writer stored one of these keys in the meantime; then nothing was written and the caller upserts."""
    try:
        with transaction.atomic(), connection.wrap_database_errors:
            _copy_into(cursor, _TABLE, batch)
    except IntegrityError as error:
        if isinstance(error.__cause__, pg_errors.UniqueViolation):
            return False
        raise
    return True


# Identical bars are filtered out by the anti-join before the INSERT: ON CONFLICT alone would lock
# (and so dirty) every conflicting row even when its WHERE then declines the update, costing more
# than the join. `xmax = 0` holds for a freshly inserted row version only, which splits the count.
_UPSERT_FROM_STAGING = f"""
WITH changed AS (
    SELECT * FROM {_STAGING} AS s
    WHERE NOT EXISTS (
        SELECT FROM {_TABLE} AS b
        WHERE b.instrument_id = s.instrument_id AND b.timeframe = s.timeframe AND b."time" = s."time"
          AND ({", ".join(f'b."{name}"' for name in _VALUES)})
              IS NOT DISTINCT FROM ({", ".join(f's."{name}"' for name in _VALUES)}))
), written AS (
    INSERT INTO {_TABLE} AS b ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} FROM changed
    ON CONFLICT (instrument_id, timeframe, "time") DO UPDATE
        SET {", ".join(f'"{name}" = EXCLUDED."{name}"' for name in _VALUES)}
        WHERE ({", ".join(f'b."{name}"' for name in _VALUES)})
              IS DISTINCT FROM ({", ".join(f'EXCLUDED."{name}"' for name in _VALUES)})
    RETURNING (b.xmax = 0) AS inserted, b.instrument_id, b.timeframe, b."time"
)
"""
_COUNT_WRITTEN = "SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM written"
_LIST_WRITTEN = 'SELECT inserted, instrument_id, timeframe, (extract(epoch FROM "time") * 1000000)::bigint FROM written'


# One staging table per connection, emptied at every commit; created again only when a rollback
# took it away. Reusing it avoids catalog churn from a CREATE and DROP per write.
_PREPARE_STAGING = f"""
CREATE TEMP TABLE IF NOT EXISTS {_STAGING} ON COMMIT DELETE ROWS
    AS SELECT {_COLUMN_LIST} FROM {_TABLE} WITH NO DATA;
TRUNCATE {_STAGING}
"""


def _upsert_via_staging(cursor: CursorWrapper, batch: BarColumns, report_written: bool) -> _Written:
    cursor.execute(_PREPARE_STAGING)
    with connection.wrap_database_errors:
        _copy_into(cursor, _STAGING, batch)
    if not report_written:
        cursor.execute(_UPSERT_FROM_STAGING + _COUNT_WRITTEN)
        inserted, updated = cursor.fetchone()
        return _Written(int(inserted), int(updated))
    cursor.execute(_UPSERT_FROM_STAGING + _LIST_WRITTEN)
    rows = cursor.fetchall()
    inserted = sum(1 for row in rows if row[0])
    return _Written(inserted, len(rows) - inserted, [(key, timeframe, time) for _, key, timeframe, time in rows])


def _copy_into(cursor: CursorWrapper, table: str, batch: BarColumns) -> None:
    with cursor.cursor.copy(f"COPY {table} ({_COLUMN_LIST}) FROM STDIN (FORMAT BINARY)") as copy:
        for block in binary_copy_blocks(batch):
            copy.write(block)


# --- PostgreSQL binary COPY format, built by numpy ------------------------------------------------
# psycopg's write_row() converts value by value, row by row, slower than the server takes the data;
# numpy lays out whole columns at once. A row is: int16 field count, then per field an int32 byte length (-1 for NULL)
# followed by the value in network byte order. Rows differ in width only by the timeframe's length
# and by which of trades/vwap are NULL, so each such layout gets one fixed-width record type.

_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"  # + flags, header extension
_TRAILER = b"\xff\xff"
_PG_EPOCH_US = 946_684_800_000_000  # binary timestamps count from 2000-01-01 UTC
_BLOCK_ROWS = 65_536  # ~6 MB per write: big enough to amortize calls, small enough to stream


def binary_copy_blocks(batch: BarColumns) -> Iterator[memoryview | bytes]:
    yield _SIGNATURE
    for start in range(0, len(batch), _BLOCK_ROWS):
        block = batch.take(slice(start, start + _BLOCK_ROWS))
        layout = block.timeframe.astype(np.int64) * 4 + np.isnan(block.trades) * 2 + np.isnan(block.vwap)
        shapes = np.unique(layout)
        for shape in shapes:
            yield memoryview(_encode(block.take(layout == shape) if len(shapes) > 1 else block))
    yield _TRAILER


def _encode(rows: BarColumns) -> npt.NDArray[np.void]:
    """Rows that share one layout as binary COPY records."""
    timeframe = TIMEFRAME_NAMES[int(rows.timeframe[0])].encode()
    payloads = {
        "instrument_id": (">i8", rows.instrument_id),
        "timeframe": (f"S{len(timeframe)}", timeframe),
        "time": (">i8", rows.time_us - _PG_EPOCH_US),
        **{name: (">f8", getattr(rows, name)) for name in _PRICE_VOLUME},
        "trades": (">i4", None if np.isnan(rows.trades[0]) else rows.trades.astype(np.int32)),
        "vwap": (">f8", None if np.isnan(rows.vwap[0]) else rows.vwap),
        "final": ("u1", rows.final),
    }
    record = [("field_count", ">i2")]
    for name, (kind, values) in payloads.items():
        record.append((f"{name}_length", ">i4"))
        if values is not None:
            record.append((name, kind))
    out = np.empty(len(rows), dtype=np.dtype(record))
    out["field_count"] = len(payloads)
    for name, (kind, values) in payloads.items():
        out[f"{name}_length"] = -1 if values is None else np.dtype(kind).itemsize
        if values is not None:
            out[name] = values
    return out


# --- SQLite ---------------------------------------------------------------------------------------

_SQLITE_UPSERT = f"""
INSERT INTO {_TABLE} ({_COLUMN_LIST}) VALUES ({", ".join(["%s"] * len(_COLUMNS))})
ON CONFLICT (instrument_id, timeframe, "time") DO UPDATE
    SET {", ".join(f'"{name}" = excluded."{name}"' for name in _VALUES)}
    WHERE ({", ".join(f'"{name}"' for name in _VALUES)}) IS NOT ({", ".join(f'excluded."{name}"' for name in _VALUES)})
"""
_NAIVE_UNIX_EPOCH = datetime(1970, 1, 1)


def _upsert_sqlite(batch: BarColumns) -> _Written:
    """SQLite's executemany reports how many rows an upsert changed but not which, so the stored
    bars of the batch's span are read first, per series (the transaction holds the write lock)."""
    times = [str(_NAIVE_UNIX_EPOCH + us * _MICROSECOND) for us in batch.time_us.tolist()]  # Django's format
    trades = [None if math.isnan(count) else int(count) for count in batch.trades.tolist()]
    vwap = [None if math.isnan(price) else price for price in batch.vwap.tolist()]
    names = [TIMEFRAME_NAMES[code] for code in batch.timeframe.tolist()]
    prices = [getattr(batch, name).tolist() for name in _PRICE_VOLUME]
    given = list(zip(*prices, trades, vwap, batch.final.tolist(), strict=True))
    with connection.cursor() as cursor:
        stored = _stored_bars_sqlite(cursor, batch, times)
        series = list(zip(batch.instrument_id.tolist(), names, times, strict=True))
        changed = [position for position, values in enumerate(given) if stored.get(series[position]) != values]
        cursor.executemany(_SQLITE_UPSERT, [(*series[position], *given[position]) for position in changed])
    inserted = sum(series[position] not in stored for position in changed)
    keys = _keys(batch)
    return _Written(inserted, len(changed) - inserted, [keys[position] for position in changed])


_SQLITE_STORED = f"""
SELECT CAST("time" AS TEXT), {", ".join(f'"{name}"' for name in _VALUES)} FROM {_TABLE}
WHERE instrument_id = %s AND timeframe = %s AND "time" BETWEEN %s AND %s
"""  # time as text: Django's converter would parse it, and the batch's keys are text too


def _stored_bars_sqlite(
    cursor: CursorWrapper, batch: BarColumns, times: list[str]
) -> dict[tuple[int, str, str], tuple[object, ...]]:
    """The stored values of the batch's span, by (instrument, timeframe, time); one query per series."""
    stored: dict[tuple[int, str, str], tuple[object, ...]] = {}
    for start, length in zip(*series_bounds(batch), strict=True):
        start, end = int(start), int(start + length)
        instrument_id, timeframe = int(batch.instrument_id[start]), TIMEFRAME_NAMES[batch.timeframe[start]]
        cursor.execute(_SQLITE_STORED, [instrument_id, timeframe, times[start], times[end - 1]])
        for time, *values in cursor.fetchall():
            stored[instrument_id, timeframe, time] = (*values[:-1], bool(values[-1]))
    return stored

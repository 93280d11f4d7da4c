"""The bar store: idempotent bulk upsert of bars into `market_bar`.

Every batch goes through the same steps: convert to columns (numpy), check every bar against the
bar invariants (raising `InvalidBars`, with nothing written), resolve duplicate keys inside the
batch (the last occurrence wins), then write. Writing a bar that is already stored with the same
values writes nothing; a bar with other values replaces the stored one.

PostgreSQL: bars after the newest stored bar of their series are appended by binary COPY straight
into the table; the others go by binary COPY into a session-local staging table and one
`INSERT ... ON CONFLICT DO UPDATE` that skips identical bars. A big batch of rows that is all new
bars in key order is converted, checked and sent piece by piece into one COPY, so that Python's
conversion overlaps the server's work. Where the table is partitioned by timeframe (plain
PostgreSQL, migration 0012) both write into the timeframe's partition, past the roll-up trigger,
and note the roll-up spans themselves; into the table itself, big appends do the same. SQLite: a
plain upsert per bar. docs/barstore.md has the design and the measured numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from functools import cache
from operator import attrgetter, itemgetter
from typing import NamedTuple
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import pandas as pd
from django.db import IntegrityError, connection, transaction
from django.db.backends.utils import CursorWrapper
from psycopg import errors as pg_errors

from market.models import Bar, Instrument, PendingRollup
from market.timeframes import BASE_TIMEFRAME, TIMEFRAMES

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
    if len(rows) == 0:
        return _empty_columns()
    return BarColumns(
        instrument_id=_numbers(rows, 0, np.int64),
        timeframe=_timeframe_codes_of_rows(rows),
        time_us=_microseconds(list(map(itemgetter(2), rows))),
        **{name: _numbers(rows, position, np.float64) for position, name in enumerate(_FLOAT_FIELDS, start=3)},
        final=_numbers(rows, 10, np.bool_),
    )


_FLOAT_FIELDS = ("open", "high", "low", "close", "volume", "trades", "vwap")  # BarRow fields 3 to 9


def _numbers[Number: np.generic](rows: Sequence[BarRow], position: int, dtype: type[Number]) -> npt.NDArray[Number]:
    """One field of every row as a numpy column. Straight from the rows when every value converts
    (a million rows in ~30 ms); through a list otherwise, where None becomes NaN as np.array does."""
    try:
        return np.fromiter(map(itemgetter(position), rows), dtype, len(rows))
    except (TypeError, ValueError):
        return np.array(list(map(itemgetter(position), rows)), dtype=dtype)


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


_UTC_ZONES = frozenset({UTC, ZoneInfo("UTC")})


def _microseconds(times: list[datetime]) -> Ints:
    """Open times as µs since the epoch. Times in UTC, what collectors and sources give, convert in
    pandas' C loop (a million in ~0.17 s); any other zone or value goes one by one (~0.25 s)."""
    try:
        all_utc = set(map(attrgetter("tzinfo"), times)) <= _UTC_ZONES  # no tzinfo: not a datetime
    except AttributeError:
        all_utc = False
    if all_utc:
        try:
            return pd.DatetimeIndex(times).as_unit("us").asi8
        except (ValueError, TypeError, OverflowError):  # e.g. beyond pandas' range (years 1677 to 2262)
            pass
    return _microseconds_one_by_one(times)


def _microseconds_one_by_one(times: list[datetime]) -> Ints:
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


def _timeframe_codes_of_rows(rows: Sequence[BarRow]) -> npt.NDArray[np.int8]:
    try:
        return np.fromiter(map(_TIMEFRAME_CODES.__getitem__, map(itemgetter(1), rows)), np.int8, len(rows))
    except (KeyError, TypeError):  # an unknown (or unhashable) name: the general way names it
        return _timeframe_codes(pd.Series(list(map(itemgetter(1), rows)), dtype=object))


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
    broken = _broken_rules(batch)
    offending = np.flatnonzero(np.any(list(broken.values()), axis=0))
    if len(offending) == 0:
        return
    problems = [
        f"{batch.describe(pos)}: {', '.join(reason for reason, mask in broken.items() if mask[pos])}"
        for pos in offending[: InvalidBars.MAX_LISTED]
    ]
    raise InvalidBars(problems, offending=len(offending), total=len(batch))


def _broken_rules(batch: BarColumns) -> dict[str, npt.NDArray[np.bool_]]:
    """Per rule, which bars break it."""
    return {reason: rule(batch) for reason, rule in _RULES}


def latest_wins(batch: BarColumns) -> BarColumns:
    """The batch sorted by (instrument, timeframe, time), one bar per key: the last one given."""
    keys = (batch.instrument_id, batch.timeframe, batch.time_us)
    if not _increasing(*keys, strictly=True):  # already sorted and unique is the common case: skip the sort
        order = np.lexsort(keys[::-1])  # stable, so equal keys keep their input order
        batch = batch.take(order)
        keys = (batch.instrument_id, batch.timeframe, batch.time_us)
        last_of_key = np.append(np.any([key[1:] != key[:-1] for key in keys], axis=0), True)
        batch = batch.take(last_of_key)
    return batch


def _increasing(*keys: npt.NDArray[np.integer], strictly: bool) -> bool:
    """Whether rows ordered by the keys (first key most significant) are increasing, or strictly."""
    if len(keys[0]) < 2:
        return True
    greater = np.zeros(len(keys[0]) - 1, dtype=np.bool_)
    equal = np.ones(len(keys[0]) - 1, dtype=np.bool_)
    for key in keys:
        greater |= equal & (key[1:] > key[:-1])
        equal &= key[1:] == key[:-1]
    return bool(greater.all() if strictly else (greater | equal).all())


def series_bounds(batch: BarColumns) -> tuple[Ints, Ints]:
    """For a sorted batch: where each (instrument, timeframe) series starts, and its length."""
    starts = _run_starts(batch.instrument_id, batch.timeframe)
    return starts, np.diff(np.append(starts, len(batch)))


def _run_starts(*keys: npt.NDArray[np.integer]) -> Ints:
    """Where each run of rows with equal keys starts."""
    changes = np.zeros(max(len(keys[0]) - 1, 0), dtype=np.bool_)
    for key in keys:
        changes |= key[1:] != key[:-1]
    return np.flatnonzero(np.append(True, changes))


# --- Entry points ---------------------------------------------------------------------------------


def upsert_bars(rows: Sequence[BarRow], *, report_written: bool = False) -> UpsertResult:
    """Insert new bars and replace changed ones; identical bars are left alone. All or nothing.
    With `report_written`, the result names the bars written (`UpsertResult.written`)."""
    if len(rows) >= _STREAM_AT_LEAST and connection.vendor == "postgresql":
        appended = _append_streaming(rows, report_written)
        if appended is not None:
            return appended
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
        stored = _stored_series(cursor, batch.instrument_id[starts], batch.timeframe[starts])
        after_newest = batch.time_us > np.repeat(stored.newest, lengths)
        new_bars = batch if after_newest.all() else batch.take(after_newest)
        if after_newest.any() and _append(cursor, new_bars, stored.partitioned):
            written.inserted = len(new_bars)
            written.keys = _keys(new_bars) if report_written else []
            batch = batch.take(~after_newest)
        if len(batch):
            written.add(_upsert_via_staging(cursor, batch, stored.partitioned, report_written))
    return written


@dataclass(frozen=True, slots=True)
class _StoredSeries:
    newest: Ints  # per series, the open time of its newest stored bar (µs), or _NO_TIME
    partitioned: bool  # whether market_bar is partitioned by timeframe (migration 0012)


def _stored_series(cursor: CursorWrapper, instrument_ids: Ints, codes: npt.NDArray[np.int8]) -> _StoredSeries:
    """Per series (an instrument and a timeframe code), the open time of its newest stored bar; and
    the bar table's layout. One query; each max() is one descent of the primary key index. The same
    query asks whether the series' instrument exists (no database foreign key does, see models.Bar):
    one round trip less per batch. Raises _UnknownInstruments if one does not."""
    cursor.execute(
        f"""SELECT EXISTS (SELECT FROM {Instrument._meta.db_table} AS i WHERE i.id = s.instrument_id),
                   (SELECT (extract(epoch FROM max(b."time")) * 1000000)::bigint FROM {_TABLE} AS b
                    WHERE b.instrument_id = s.instrument_id AND b.timeframe = s.timeframe),
                   (SELECT c.relkind = 'p' FROM pg_class AS c WHERE c.oid = '{_TABLE}'::regclass)
            FROM unnest(%s::bigint[], %s::text[]) WITH ORDINALITY AS s(instrument_id, timeframe, position)
            ORDER BY s.position""",
        [instrument_ids.tolist(), [TIMEFRAME_NAMES[code] for code in codes.tolist()]],
    )
    rows = cursor.fetchall()
    if not all(exists for exists, _, _ in rows):
        raise _UnknownInstruments(
            {
                instrument_id
                for instrument_id, (exists, _, _) in zip(instrument_ids.tolist(), rows, strict=True)
                if exists
            }
        )
    newest = np.array([_NO_TIME if time is None else time for _, time, _ in rows], dtype=np.int64)
    return _StoredSeries(newest, partitioned=bool(rows[0][2]))


def _append(cursor: CursorWrapper, batch: BarColumns, partitioned: bool) -> bool:
    """COPY bars that are newer than anything stored straight into the table (the partition of their
    timeframe, where there is one). False if a concurrent writer stored one of these keys in the
    meantime; then nothing was written and the caller upserts."""
    target = _copy_target(_timeframes_of(batch.timeframe), partitioned)
    try:
        with (
            transaction.atomic(),
            connection.wrap_database_errors,
            _rollup_noted_here(cursor, len(batch), target) as spans,
        ):
            _copy_into(cursor, target, binary_copy_blocks(batch))
            spans.add(batch)
    except IntegrityError as error:
        if _a_key_was_taken(error):
            return False
        raise
    return True


def _timeframes_of(codes: npt.NDArray[np.int8]) -> list[str]:
    """The timeframes of these (valid) codes, each once, in code order. A batch is nearly always of
    one timeframe, which one comparison finds; np.unique would sort a million codes (6 ms)."""
    if (codes == codes[0]).all():
        return [TIMEFRAME_NAMES[int(codes[0])]]
    return [TIMEFRAME_NAMES[code] for code in np.flatnonzero(np.bincount(codes)).tolist()]


def _copy_target(timeframes: list[str], partitioned: bool) -> str:
    """Where new bars of these timeframes go: one timeframe's partition, else the table itself."""
    return _partition(timeframes[0]) if partitioned and len(timeframes) == 1 else _TABLE


def _partition(timeframe: str) -> str:
    return f"{_TABLE}_{timeframe}"  # named so by migration 0012


def _a_key_was_taken(error: IntegrityError) -> bool:
    """Whether an append failed because a concurrent writer stored one of its keys first."""
    return isinstance(error.__cause__, pg_errors.UniqueViolation)


# The roll-up triggers (migration 0004) find what a statement changed by grouping its transition
# table: for a big COPY that is a tenth of the write. For its appends the store already knows the
# spans (bars sorted by series and time), so it notes them itself: into a partition, where no
# trigger fires (migration 0012), always; into the table itself, for a big append only, with the
# triggers told to skip that one statement (migration 0011). Small appends into the table leave it
# to the triggers: measured, the two extra round trips cost 5-10% up to 1,000 bars, break even at
# 2,000 and save 10-15% from 10,000 on.
_NOTED_BY_WRITER = "cryptostock.rollup_noted"
_NOTE_ITSELF_AT_LEAST = 5_000
_BASE_CODE = _TIMEFRAME_CODES[BASE_TIMEFRAME]
_DAY_US = 86_400_000_000
_NOTE_SPANS = f"""
INSERT INTO {PendingRollup._meta.db_table} (instrument_id, first_time, last_time)
SELECT instrument_id, 'epoch'::timestamptz + first_us * interval '1 microsecond',
       'epoch'::timestamptz + last_us * interval '1 microsecond'
FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[]) AS s(instrument_id, first_us, last_us)
"""


@dataclass(slots=True)
class _RollupSpans:
    """What the roll-up trigger notes for appended bars, gathered piece by piece: per instrument
    and UTC day of 1m bars, the first and last open time (kept as both ends of each span)."""

    active: bool
    instrument_ids: list[Ints] = field(default_factory=list)
    ends_us: list[Ints] = field(default_factory=list)

    def add(self, bars: BarColumns) -> None:
        """Bars in key order, each piece after the pieces added before."""
        if self.active:
            base = bars.take(bars.timeframe == _BASE_CODE)
            instrument_ids, ends_us = _span_ends(base.instrument_id, base.time_us)
            self.instrument_ids.append(instrument_ids)
            self.ends_us.append(ends_us)

    def insert(self, cursor: CursorWrapper) -> None:
        if not self.active:
            return
        # the ends of all pieces, taken as bars, give each span once: also one cut by a piece boundary
        instrument_ids, ends_us = _span_ends(np.concatenate(self.instrument_ids), np.concatenate(self.ends_us))
        if len(ends_us):
            cursor.execute(_NOTE_SPANS, [instrument_ids[::2].tolist(), ends_us[::2].tolist(), ends_us[1::2].tolist()])


def _span_ends(instrument_ids: Ints, times_us: Ints) -> tuple[Ints, Ints]:
    """For bars sorted by instrument and time: the first and last bar of each instrument's UTC day,
    as (instrument, time) pairs, the first bar's before the last bar's."""
    if len(times_us) == 0:
        return instrument_ids, times_us
    starts = _run_starts(instrument_ids, times_us // _DAY_US)
    ends = np.column_stack([starts, np.append(starts[1:], len(times_us)) - 1]).ravel()
    return instrument_ids[ends], times_us[ends]


@contextmanager
def _rollup_noted_here(cursor: CursorWrapper, count: int, target: str) -> Iterator[_RollupSpans]:
    """Around a COPY of `count` new bars into `target` that adds each piece to the spans it yields:
    the spans are noted here where no trigger would note them, or where the trigger is told to skip
    a big append. Used inside a savepoint only, whose rollback also takes back the setting and the
    notes if the COPY fails."""
    past_the_trigger = target != _TABLE
    spans = _RollupSpans(active=past_the_trigger or count >= _NOTE_ITSELF_AT_LEAST)
    trigger_told_to_skip = spans.active and not past_the_trigger
    if trigger_told_to_skip:
        cursor.execute("SELECT set_config(%s, 'on', true)", [_NOTED_BY_WRITER])
    yield spans
    if trigger_told_to_skip:
        cursor.execute("SELECT set_config(%s, '', true)", [_NOTED_BY_WRITER])
    spans.insert(cursor)


# Identical bars are filtered out by the anti-join before the INSERT: ON CONFLICT alone would lock
# (and so dirty) every conflicting row even when its WHERE then declines the update, costing more
# than the join. `xmax = 0` holds for a freshly inserted row version only, which splits the count;
# PostgreSQL returns no system column from a partitioned table, so on one the statement writes to a
# timeframe's partition, where no trigger fires, and notes the 1m spans it wrote itself, grouped
# as the trigger groups them.
@cache
def _upsert_from_staging(timeframe: str | None) -> str:
    """The statement for the staged bars of one timeframe into its partition, or for all of them
    into the table itself (None)."""
    target = _TABLE if timeframe is None else _partition(timeframe)
    of_timeframe = "" if timeframe is None else f"s.timeframe = '{timeframe}' AND "
    stored, staged, excluded = (", ".join(f'{alias}."{name}"' for name in _VALUES) for alias in ("b", "s", "EXCLUDED"))
    statement = f"""
WITH changed AS (
    SELECT * FROM {_STAGING} AS s
    WHERE {of_timeframe}NOT EXISTS (
        SELECT FROM {target} AS b
        WHERE b.instrument_id = s.instrument_id AND b.timeframe = s.timeframe AND b."time" = s."time"
          AND ({stored}) IS NOT DISTINCT FROM ({staged}))
), written AS (
    INSERT INTO {target} AS b ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} FROM changed
    ON CONFLICT (instrument_id, timeframe, "time") DO UPDATE
        SET {", ".join(f'"{name}" = EXCLUDED."{name}"' for name in _VALUES)}
        WHERE ({stored}) IS DISTINCT FROM ({excluded})
    RETURNING (b.xmax = 0) AS inserted, b.instrument_id, b.timeframe, b."time"
)"""
    if timeframe != BASE_TIMEFRAME:
        return statement
    return f"""{statement}, noted AS (
    INSERT INTO {PendingRollup._meta.db_table} (instrument_id, first_time, last_time)
    SELECT instrument_id, min("time"), max("time") FROM written
    GROUP BY instrument_id, floor(date_part('epoch', "time") / 86400)
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


def _upsert_via_staging(cursor: CursorWrapper, batch: BarColumns, partitioned: bool, report_written: bool) -> _Written:
    cursor.execute(_PREPARE_STAGING)
    with connection.wrap_database_errors:
        _copy_into(cursor, _STAGING, binary_copy_blocks(batch))
    timeframes: list[str | None] = [*_timeframes_of(batch.timeframe)] if partitioned else [None]
    written = _Written()
    for timeframe in timeframes:
        if report_written:
            cursor.execute(_upsert_from_staging(timeframe) + _LIST_WRITTEN)
            rows = cursor.fetchall()
            inserted = sum(1 for row in rows if row[0])
            keys = [(instrument_id, name, time_us) for _, instrument_id, name, time_us in rows]
            written.add(_Written(inserted, len(rows) - inserted, keys))
        else:
            cursor.execute(_upsert_from_staging(timeframe) + _COUNT_WRITTEN)
            inserted, updated = cursor.fetchone()
            written.add(_Written(int(inserted), int(updated)))
    return written


def _copy_into(cursor: CursorWrapper, table: str, blocks: Iterable[memoryview | bytes]) -> None:
    """Binary COPY of the blocks (binary_copy_blocks, _framed) into the table, each sent as made."""
    with cursor.cursor.copy(f"COPY {table} ({_COLUMN_LIST}) FROM STDIN (FORMAT BINARY)") as copy:
        for block in blocks:
            copy.write(block)


# --- PostgreSQL: a big batch of new rows, converted while the server stores -------------------------
# Converting a million BarRows to columns takes ~0.5 s of Python, and storing them ~1.7 s of the
# server's time: 2.2 s one after the other. Converted and sent piece by piece into one COPY, each
# piece's conversion overlaps the server's work on the pieces before, and the batch takes about
# as long as the server alone. Big batches of rows come from backfills and imports of history.

_PIECE_ROWS = 16_384  # 8k and 16k overlapped better than 64k pieces (docs/barstore.md)
_STREAM_AT_LEAST = 2 * _PIECE_ROWS  # measured: no gain at 10k bars, 20% at 30k


class _NotAppendable(Exception):
    """A piece of a streamed batch is not all valid new bars: the batch takes the general path."""


def _append_streaming(rows: Sequence[BarRow], report_written: bool) -> UpsertResult | None:
    """Append rows by one COPY, converting and checking each piece before it is sent. Only for the
    usual shape of a big batch: in key order without duplicates, every series after its newest
    stored bar, every bar valid. Otherwise (or if a concurrent writer stored one of these keys)
    None, with nothing written: the general path then takes the whole batch, names any bad bar and
    upserts the rest."""
    series = _series_of_sorted_rows(rows)
    if series is None:
        return None
    starts, instrument_ids, codes = series
    written: list[BarKey] = []

    def noted(pieces: Iterator[BarColumns], spans: _RollupSpans) -> Iterator[BarColumns]:
        for piece in pieces:
            spans.add(piece)
            written.extend(_keys(piece) if report_written else ())
            yield piece

    try:
        with transaction.atomic(), connection.wrap_database_errors, connection.cursor() as cursor:
            stored = _stored_series(cursor, instrument_ids, codes)
            if not _series_start_after(rows, starts, stored.newest):  # a re-upsert, most likely: no COPY to take back
                return None
            target = _copy_target(_timeframes_of(codes), stored.partitioned)
            with _rollup_noted_here(cursor, len(rows), target) as spans:
                _copy_into(cursor, target, _framed(noted(_new_bar_pieces(rows, starts, codes), spans)))
    except (_NotAppendable, _UnknownInstruments):
        return None
    except IntegrityError as error:
        if _a_key_was_taken(error):
            return None
        raise
    return UpsertResult(inserted=len(rows), written=frozenset(written))


def _series_of_sorted_rows(rows: Sequence[BarRow]) -> tuple[Ints, Ints, npt.NDArray[np.int8]] | None:
    """Where each series starts, with its instrument and timeframe code, if the rows come grouped
    by instrument in order; else None. A series is taken to be an instrument's run of rows, of the
    timeframe of its first row: reading every row's timeframe here would cost ~50 ms a million
    before the COPY could begin, so each piece checks its own rows' instead (_new_bar_pieces)."""
    try:
        instrument_ids = _numbers(rows, 0, np.int64)
    except (TypeError, ValueError):
        return None
    if not _increasing(instrument_ids, strictly=False):
        return None
    starts = _run_starts(instrument_ids)
    try:
        codes = _timeframe_codes_of_rows([rows[start] for start in starts.tolist()])
    except InvalidBars:
        return None
    return starts, instrument_ids[starts], codes


def _series_start_after(rows: Sequence[BarRow], starts: Ints, newest: Ints) -> bool:
    """Whether the first bar of each series is after its newest stored bar."""
    try:
        first_times = _microseconds([rows[start].time for start in starts.tolist()])
    except InvalidBars:
        return False
    return bool((first_times > newest).all())


def _new_bar_pieces(rows: Sequence[BarRow], starts: Ints, codes: npt.NDArray[np.int8]) -> Iterator[BarColumns]:
    """The rows as columns, piece by piece; raises _NotAppendable at the first piece holding a bad
    bar, a bar not after the one before it in its series, or one of another timeframe."""
    continues_series = np.ones(len(rows), dtype=np.bool_)
    continues_series[starts] = False
    series_codes = np.repeat(codes, np.diff(np.append(starts, len(rows))))
    previous_time = _NO_TIME
    for begin in range(0, len(rows), _PIECE_ROWS):
        try:
            piece = columns_from_rows(rows[begin : begin + _PIECE_ROWS])
        except InvalidBars:
            raise _NotAppendable from None
        before = np.append(previous_time, piece.time_us[:-1])
        not_after = continues_series[begin : begin + len(piece)] & (piece.time_us <= before)
        other_timeframe = piece.timeframe != series_codes[begin : begin + len(piece)]
        if not_after.any() or other_timeframe.any() or np.any(list(_broken_rules(piece).values())):
            raise _NotAppendable
        previous_time = int(piece.time_us[-1])
        yield piece


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
    return _framed(batch.take(slice(start, start + _BLOCK_ROWS)) for start in range(0, len(batch), _BLOCK_ROWS))


def _framed(pieces: Iterable[BarColumns]) -> Iterator[memoryview | bytes]:
    """A whole binary COPY stream of the pieces, each encoded when the one before has been sent."""
    yield _SIGNATURE
    for piece in pieces:
        yield from _encoded_blocks(piece)
    yield _TRAILER


def _encoded_blocks(block: BarColumns) -> Iterator[memoryview]:
    """The records of some bars, one block per layout."""
    layout = block.timeframe.astype(np.int64) * 4 + np.isnan(block.trades) * 2 + np.isnan(block.vwap)
    shapes = np.unique(layout)
    for shape in shapes:
        yield memoryview(_encode(block.take(layout == shape) if len(shapes) > 1 else block))


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

"""The reads behind the admin's bar pages: a bar's key as text, and the newest bars matching the
list's filters, one keyset page at a time.

The list is ordered newest first by (time, instrument, timeframe), and a page continues after the
last bar of the one before it (the cursor), never by OFFSET and never with a COUNT(*): the bar table
holds millions of rows. Its only index is the primary key (instrument_id, timeframe, time), so
"the newest bars of every series" is not one index range. On PostgreSQL the page is read per series
from that index instead: first the newest bar of each series (one index descent each), which gives
a floor (the page-size-th newest of those times: at least a page of bars is at or above it), then
each series' bars from its newest down to the floor, at most a page of them. Open bars
(final=False) are found through their own partial index by the plain ordered query, which is also
what other databases (SQLite, for development) run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from django.db import connection, transaction
from django.db.models import Q, QuerySet

from market.models import Bar, Instrument
from market.timeframes import TIMEFRAMES

_BIGINT_MAX = 2**63 - 1  # instrument ids are bigint; a bigger number would fail in the database


class BarPrimaryKey(NamedTuple):
    """A bar's identity, as in the admin's URLs (`<instrument_id>/<timeframe>/<ISO time>`) and in
    LogEntry.object_id (the same three parts joined by "/")."""

    instrument_id: int
    timeframe: str
    time: datetime

    @classmethod
    def of(cls, bar: Bar) -> BarPrimaryKey:
        return cls(bar.instrument_id, bar.timeframe, bar.time)

    @classmethod
    def parse(cls, instrument_id: int | str, timeframe: str, time: str) -> BarPrimaryKey:
        """The key from its URL parts; ValueError names what is wrong. The time must carry its
        offset (Z or +hh:mm): a naive time would be a guess."""
        number = int(instrument_id)
        if not 0 < number <= _BIGINT_MAX:
            raise ValueError(f"no instrument has the id {instrument_id!r}")
        if timeframe not in TIMEFRAMES:
            raise ValueError(f"unknown timeframe {timeframe!r}; known: {', '.join(TIMEFRAMES)}")
        moment = datetime.fromisoformat(time)
        if moment.tzinfo is None:
            raise ValueError(f"time {time!r} has no UTC offset")
        try:
            return cls(number, timeframe, moment.astimezone(UTC))
        except OverflowError:  # 9999-12-31T23:59-01:00 is after the last datetime in UTC
            raise ValueError(f"time {time!r} is out of range") from None

    @classmethod
    def from_text(cls, text: str) -> BarPrimaryKey:
        parts = text.split("/")
        if len(parts) != 3:
            raise ValueError(f"a bar key is instrument/timeframe/time, not {text!r}")
        return cls.parse(*parts)

    @property
    def time_text(self) -> str:
        return self.time.astimezone(UTC).isoformat().replace("+00:00", "Z")

    @property
    def url_args(self) -> tuple[int, str, str]:
        return (self.instrument_id, self.timeframe, self.time_text)

    @property
    def text(self) -> str:
        return "/".join(str(part) for part in self.url_args)


@dataclass(frozen=True)
class BarFilters:
    """What the list shows: every field None (or "") means no filter on it. `since` is inclusive,
    `until` exclusive."""

    exchange_id: int | None = None
    instrument_id: int | None = None
    symbol: str = ""
    timeframe: str | None = None
    final: bool | None = None
    since: datetime | None = None
    until: datetime | None = None


def matching_instruments(filters: BarFilters) -> QuerySet[Instrument]:
    instruments = Instrument.objects.all()
    if filters.exchange_id is not None:
        instruments = instruments.filter(exchange_id=filters.exchange_id)
    if filters.instrument_id is not None:
        instruments = instruments.filter(pk=filters.instrument_id)
    if filters.symbol:
        instruments = instruments.filter(symbol__icontains=filters.symbol)
    return instruments


def newest_bars(filters: BarFilters, *, after: BarPrimaryKey | None = None, limit: int) -> list[Bar]:
    """The newest `limit` bars matching `filters`, ordered by (time, instrument_id, timeframe)
    descending, continuing after the bar `after` (the last one of the previous page) if given.
    Each bar comes with its instrument and exchange."""
    instrument_ids = list(matching_instruments(filters).values_list("pk", flat=True))
    timeframes = [filters.timeframe] if filters.timeframe else list(TIMEFRAMES)
    if not instrument_ids or limit <= 0:
        return []
    # Open bars (final=False) have their own partial index (timeframe, time) WHERE NOT final
    # (migration 0004), which the plain query uses: a few per series, found without visiting them.
    if connection.vendor == "postgresql" and filters.final is not False:
        return _newest_bars_per_series(instrument_ids, timeframes, filters, after, limit)
    return newest_bars_plain(instrument_ids, timeframes, filters, after, limit)


def newest_bars_plain(
    instrument_ids: Sequence[int],
    timeframes: Sequence[str],
    filters: BarFilters,
    after: BarPrimaryKey | None,
    limit: int,
) -> list[Bar]:
    """The page as one ordered query: the definition the per-series read must match (its test
    compares the two), and what SQLite runs."""
    bars = Bar.objects.filter(instrument_id__in=instrument_ids, timeframe__in=timeframes)
    if filters.final is not None:
        bars = bars.filter(final=filters.final)
    if filters.since is not None:
        bars = bars.filter(time__gte=filters.since)
    if filters.until is not None:
        bars = bars.filter(time__lt=filters.until)
    if after is not None:
        bars = bars.filter(
            Q(time__lt=after.time)
            | Q(time=after.time, instrument_id__lt=after.instrument_id)
            | Q(time=after.time, instrument_id=after.instrument_id, timeframe__lt=after.timeframe)
        )
    ordered = bars.select_related("instrument__exchange").order_by("-time", "-instrument_id", "-timeframe")
    return list(ordered[:limit])


# In the model's field order, which is what Model.from_db() takes.
_FIELDS = [field.attname for field in Bar._meta.concrete_fields]

# {window} is the filters' condition on bar b of series s (the same in both places it appears).
_PAGE_PER_SERIES = """
WITH series AS (
    SELECT i.instrument_id, t.timeframe
    FROM unnest(%(instrument_ids)s::bigint[]) AS i(instrument_id)
    CROSS JOIN unnest(%(timeframes)s::text[]) AS t(timeframe)
), newest AS MATERIALIZED (
    SELECT s.instrument_id, s.timeframe, (
        SELECT b."time" FROM market_bar AS b
        WHERE b.instrument_id = s.instrument_id AND b.timeframe = s.timeframe AND {window}
        ORDER BY b."time" DESC LIMIT 1
    ) AS "time"
    FROM series AS s
), floor AS (
    SELECT coalesce(
        (SELECT "time" FROM newest WHERE "time" IS NOT NULL ORDER BY "time" DESC OFFSET %(nth)s LIMIT 1),
        '-infinity'::timestamptz
    ) AS "time"
)
SELECT {columns}
FROM newest AS s CROSS JOIN floor CROSS JOIN LATERAL (
    SELECT * FROM market_bar AS b
    WHERE b.instrument_id = s.instrument_id AND b.timeframe = s.timeframe AND {window}
      AND b."time" >= floor."time"
    ORDER BY b."time" DESC LIMIT %(limit)s
) AS b
WHERE s."time" IS NOT NULL
ORDER BY b."time" DESC, b.instrument_id DESC, b.timeframe DESC
LIMIT %(limit)s
"""


def _window(filters: BarFilters, after: BarPrimaryKey | None) -> tuple[str, dict[str, Any]]:
    conditions: list[str] = ["TRUE"]
    params: dict[str, Any] = {}
    if filters.final is not None:
        conditions.append("b.final = %(final)s")
        params["final"] = filters.final
    if filters.since is not None:
        conditions.append('b."time" >= %(since)s')
        params["since"] = filters.since
    if filters.until is not None:
        conditions.append('b."time" < %(until)s')
        params["until"] = filters.until
    if after is not None:
        # `time <= ...` on its own so that it bounds the index scan; the rest only drops the bars
        # at that very time which came before the cursor.
        conditions.append(
            'b."time" <= %(after_time)s AND (b."time" < %(after_time)s'
            " OR (b.instrument_id, b.timeframe) < (%(after_instrument)s, %(after_timeframe)s::text))"
        )
        params |= {"after_time": after.time, "after_instrument": after.instrument_id}
        params["after_timeframe"] = after.timeframe
    return " AND ".join(conditions), params


def _newest_bars_per_series(
    instrument_ids: Sequence[int],
    timeframes: Sequence[str],
    filters: BarFilters,
    after: BarPrimaryKey | None,
    limit: int,
) -> list[Bar]:
    window, params = _window(filters, after)
    sql = _PAGE_PER_SERIES.format(window=window, columns=", ".join(f'b."{name}"' for name in _FIELDS))
    params |= {"instrument_ids": list(instrument_ids), "timeframes": list(timeframes), "nth": limit - 1}
    params["limit"] = limit
    with transaction.atomic(), connection.cursor() as cursor:
        # The planner cannot know that the floor stops each series after a bar or two, estimates
        # millions of rows and JIT-compiles the query: 150 ms of compiling for 50 ms of work.
        cursor.execute("SET LOCAL jit = off")
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    bars = [Bar.from_db(connection.alias, _FIELDS, row) for row in rows]
    instruments = Instrument.objects.select_related("exchange").in_bulk({bar.instrument_id for bar in bars})
    for bar in bars:
        bar.instrument = instruments[bar.instrument_id]
    return bars


def find_bars(keys: Sequence[BarPrimaryKey]) -> list[Bar]:
    """The stored bars of these keys (missing ones left out), newest first, with their instruments."""
    if not keys:
        return []
    bars = Bar.objects.filter(pk__in=[tuple(key) for key in keys]).select_related("instrument__exchange")
    return list(bars.order_by("-time", "-instrument_id", "-timeframe"))


def find_bar(key: BarPrimaryKey) -> Bar | None:
    found = find_bars([key])
    return found[0] if found else None

"""Reads the indicator app needs from the bar table, shaped as `Bars` (numpy columns), not models."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from functools import cache

import numpy as np
from django.conf import settings
from django.db import connection
from django.db.models import Aggregate, Count, Max, Q, Sum

from indicators.compute import Context
from indicators.series import Bars
from indicators.sessions import SessionTable
from market.models import Bar, Instrument
from market.rollup import SESSION_ASSET_CLASSES
from market.sessions import session_bounds

COLUMNS = ("time", "open", "high", "low", "close", "volume")
Fingerprint = tuple[int, int | None, float | None, float | None, int]


def utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def _to_bars(rows: Iterable[tuple[datetime, float, float, float, float, float]]) -> Bars:
    rows = list(rows)
    if not rows:
        return Bars.from_rows([])
    times = np.fromiter((int(row[0].timestamp()) for row in rows), dtype=np.int64, count=len(rows))
    values = np.array([row[1:] for row in rows], dtype=np.float64)
    return Bars.from_columns(times, *values.T)


@cache
def session_table(calendar: str) -> SessionTable:
    """Every session of `calendar` (1990 to 2035) as arrays; built once per process and calendar."""
    return SessionTable.from_bounds(calendar, *session_bounds(calendar))


def instrument_context(instrument: Instrument) -> Context:
    """Stocks and indices trade in the sessions of SESSION_CALENDAR (holidays, early closes, DST from
    the exchange calendar); other instruments trade around the clock."""
    if instrument.asset_class in SESSION_ASSET_CLASSES:
        return Context(sessions=session_table(settings.SESSION_CALENDAR))
    return Context()


def load_bars(
    instrument_id: int, timeframe: str, start: int | None, end: int | None, *, before: int = 0, limit: int | None = None
) -> Bars:
    """Bars with start <= time < end (epoch seconds; None: unbounded), plus `before` bars before start.

    With `start` None, `before` is ignored and the newest `limit` bars before `end` are returned.
    """
    series = Bar.objects.for_series(instrument_id, timeframe)
    if end is not None:
        series = series.filter(time__lt=utc(end))
    if start is None:
        newest = list(series.order_by("-time").values_list(*COLUMNS)[: limit or None])
        return _to_bars(reversed(newest))
    earlier: list[tuple[datetime, float, float, float, float, float]] = []
    if before:
        earlier = list(series.filter(time__lt=utc(start)).order_by("-time").values_list(*COLUMNS)[:before])
        earlier.reverse()
    in_range = series.filter(time__gte=utc(start)).order_by("time").values_list(*COLUMNS)
    return _to_bars([*earlier, *(in_range[:limit] if limit else in_range)])


def nth_time_before(instrument_id: int, timeframe: str, time: int, n: int) -> int | None:
    """The time of the n-th bar before `time` (or of the first bar if there are fewer); None if none."""
    if n <= 0:
        return time
    series = Bar.objects.for_series(instrument_id, timeframe).filter(time__lt=utc(time)).order_by("-time")
    found = series.values_list("time", flat=True)[n - 1 : n].first()
    if found is None:
        found = series.order_by("time").values_list("time", flat=True).first()
    return None if found is None else int(found.timestamp())


def range_edges(
    instrument_id: int, timeframe: str, start: int | None, end: int | None, limit: int
) -> tuple[int, int] | None:
    """[first bar time, last bar time] of the at most `limit` bars a request covers; None if no bars.

    As the bars endpoint: with `start`, the first `limit` bars from it; without, the newest `limit`.
    """
    series = Bar.objects.for_series(instrument_id, timeframe)
    if end is not None:
        series = series.filter(time__lt=utc(end))
    if start is not None:
        times = series.filter(time__gte=utc(start)).order_by("time").values_list("time", flat=True)
    else:
        times = series.order_by("-time").values_list("time", flat=True)
    first = times.first()
    last = times[limit - 1 : limit].first() or times.last()
    if first is None or last is None:
        return None
    edges = sorted((int(first.timestamp()), int(last.timestamp())))
    return edges[0], edges[1]


def fingerprints(instrument_id: int, timeframe: str, chunks: dict[int, tuple[int, int]]) -> dict[int, Fingerprint]:
    """Per chunk (id -> [start, end) in epoch seconds): count, newest time, sums of close and volume,
    final count. Any write to a chunk's bars (insert, correction, a bar turning final) changes it."""
    if not chunks:
        return {}
    aggregates: dict[str, Aggregate] = {}
    for chunk, (start, end) in chunks.items():
        inside = Q(time__gte=utc(start), time__lt=utc(end))
        aggregates[f"n{chunk}"] = Count("time", filter=inside)
        aggregates[f"t{chunk}"] = Max("time", filter=inside)
        aggregates[f"c{chunk}"] = Sum("close", filter=inside)
        aggregates[f"v{chunk}"] = Sum("volume", filter=inside)
        aggregates[f"f{chunk}"] = Count("time", filter=inside & Q(final=True))
    lowest = min(start for start, _ in chunks.values())
    highest = max(end for _, end in chunks.values())
    series = Bar.objects.for_series(instrument_id, timeframe).filter(time__gte=utc(lowest), time__lt=utc(highest))
    row = series.aggregate(**aggregates)
    result: dict[int, Fingerprint] = {}
    for chunk in chunks:
        newest = row[f"t{chunk}"]
        result[chunk] = (
            row[f"n{chunk}"],
            None if newest is None else int(newest.timestamp()),
            row[f"c{chunk}"],
            row[f"v{chunk}"],
            row[f"f{chunk}"],
        )
    return result


SOURCE_SQL = {
    "close": "close",
    "open": "open",
    "high": "high",
    "low": "low",
    "hl2": "(high + low) / 2.0",
    "hlc3": "(high + low + close) / 3.0",
    "ohlc4": "(open + high + low + close) / 4.0",
}


def obv_at(instrument_id: int, timeframe: str, time: int, source: str = "close") -> float:
    """The series' OBV at the bar at `time`, accumulated from its first stored bar (TA-Lib's seed:
    the first bar's volume). One pass in the database; window functions exist in SQLite and PostgreSQL."""
    price = SOURCE_SQL[source]
    table = Bar._meta.db_table
    sql = f"""
        SELECT COALESCE(SUM(CASE WHEN prev IS NULL OR price > prev THEN volume
                                 WHEN price < prev THEN -volume ELSE 0 END), 0)
        FROM (SELECT {price} AS price, volume, LAG({price}) OVER (ORDER BY time) AS prev
              FROM {table} WHERE instrument_id = %s AND timeframe = %s AND time <= %s) AS s
    """
    moment = connection.ops.adapt_datetimefield_value(utc(time))
    with connection.cursor() as cursor:
        cursor.execute(sql, [instrument_id, timeframe, moment])
        (value,) = cursor.fetchone()
    return float(value)

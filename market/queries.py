"""Read paths for bars, shaped for the wire (API and WebSocket) without model instances."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import BigIntegerField, Func, OuterRef, Subquery

from market.models import Bar, Instrument

BAR_FIELDS = ("time", "open", "high", "low", "close", "volume", "trades", "vwap", "final")


class EpochSeconds(Func):
    """A timestamp as whole seconds since 1970-01-01 UTC, computed by the database.

    Django's psycopg timestamptz loader is pure Python; turning 1,000 timestamps into aware
    datetimes and back into epoch seconds was most of the cost of a bars read. The database does
    the conversion in C.
    """

    output_field = BigIntegerField()

    @property
    def convert_value(self) -> Any:
        # Both databases already return an int: skip the int() Django would call on every row.
        return self._convert_value_noop  # type: ignore[attr-defined]

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(compiler, connection, template="CAST(EXTRACT(EPOCH FROM %(expressions)s) AS bigint)")

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(compiler, connection, template="unixepoch(%(expressions)s)")


def bars_payload(
    instrument_id: int,
    timeframe: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int,
    newest_first: bool = False,
) -> list[dict[str, Any]]:
    """Bars of one series in [start, end), at most `limit`, oldest first unless `newest_first`, in the
    wire shape (time in UTC epoch seconds). No model instances, no per-row datetimes.

    Without `start`, the newest `limit` bars are returned (still ordered as asked), which is what a
    chart wants when it opens.
    """
    query = Bar.objects.for_series(instrument_id, timeframe)
    if start is not None:
        query = query.filter(time__gte=start)
    if end is not None:
        query = query.filter(time__lt=end)
    take_newest = newest_first or start is None
    rows = list(
        query.order_by("-time" if take_newest else "time")
        .annotate(epoch=EpochSeconds("time"))
        .values_list("epoch", *BAR_FIELDS[1:])[:limit]
    )
    if take_newest and not newest_first:
        rows.reverse()
    return [dict(zip(BAR_FIELDS, row, strict=True)) for row in rows]


def latest_bars_payload(instrument_id: int, timeframe: str, limit: int) -> list[dict[str, Any]] | None:
    """The newest `limit` bars oldest first, or None if the instrument does not exist."""
    if not Instrument.objects.filter(pk=instrument_id).exists():
        return None
    return bars_payload(instrument_id, timeframe, limit=limit)


def most_recently_updated(instrument_ids: list[int], timeframe: str = "1m") -> int | None:
    """Of these instruments, the one whose newest bar is the most recent (the one a chart should open
    on): one index lookup per instrument, never a scan of the bar table."""
    newest = Bar.objects.filter(instrument_id=OuterRef("pk"), timeframe=timeframe).order_by("-time").values("time")[:1]
    return (
        Instrument.objects.filter(pk__in=instrument_ids)
        .annotate(newest=Subquery(newest))
        .filter(newest__isnull=False)
        .order_by("-newest")
        .values_list("pk", flat=True)
        .first()
    )

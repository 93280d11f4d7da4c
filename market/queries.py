"""Read paths for bars, shaped for the wire (API and WebSocket) without model instances."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import OuterRef, Subquery

from market.models import Bar, Instrument

BAR_COLUMNS = ("time", "open", "high", "low", "close", "volume", "trades", "vwap", "final")


def _rows_to_payload(rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    return [
        {
            "time": int(time.timestamp()),
            "open": o,
            "high": h,
            "low": low,
            "close": c,
            "volume": v,
            "trades": n,
            "vwap": vw,
            "final": final,
        }
        for time, o, h, low, c, v, n, vw, final in rows
    ]


def bars_payload(
    instrument_id: int,
    timeframe: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int,
    newest_first: bool = False,
) -> list[dict[str, Any]]:
    """Bars of one series in [start, end), at most `limit`, oldest first unless `newest_first`.

    Without `start`, the newest `limit` bars are returned (still ordered as asked), which is what a
    chart wants when it opens.
    """
    query = Bar.objects.for_series(instrument_id, timeframe)
    if start is not None:
        query = query.filter(time__gte=start)
    if end is not None:
        query = query.filter(time__lt=end)
    take_newest = newest_first or start is None
    query = query.order_by("-time" if take_newest else "time")
    rows = list(query.values_list(*BAR_COLUMNS)[:limit])
    if take_newest and not newest_first:
        rows.reverse()
    return _rows_to_payload(rows)


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

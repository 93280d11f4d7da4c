"""The bars endpoint's fast path: rows straight from the database as epoch seconds and floats,
rendered once with orjson into the response body; repeated requests from the cache (market.bars_cache).

The rows come from `market.queries.ordered_bar_rows` (epoch seconds computed by the database, no
model instances) and are encoded by `market.queries.encode_bars_body`; no serializer objects per row.
"""

from __future__ import annotations

from typing import Any

from market.models import Instrument
from market.queries import encode_bars_body, ordered_bar_rows


def render_bars(instrument_id: int, timeframe: str, params: dict[str, Any]) -> bytes | None:
    """The response body of a validated bars request; None if there is no such instrument."""
    rows = ordered_bar_rows(
        instrument_id,
        timeframe,
        start=params.get("start"),
        end=params.get("end"),
        limit=params["limit"],
        newest_first=params["order"] == "desc",
    )
    # Bars come only from existing instruments: the existence question is left for an empty answer.
    if not rows and not Instrument.objects.filter(pk=instrument_id).exists():
        return None
    return encode_bars_body(instrument_id, timeframe, rows)

"""The bars endpoint's fast path: rows straight from the database as epoch seconds and floats,
rendered once with orjson into the response body; repeated requests from the cache (market.bars_cache).

The rows come from `market.queries.bars_payload` (epoch seconds computed by the database, no model
instances); no serializer objects per row.
"""

from __future__ import annotations

from typing import Any

import orjson

from market.models import Instrument
from market.queries import bars_payload


def render_bars(instrument_id: int, timeframe: str, params: dict[str, Any]) -> bytes | None:
    """The response body of a validated bars request; None if there is no such instrument."""
    bars = bars_payload(
        instrument_id,
        timeframe,
        start=params.get("start"),
        end=params.get("end"),
        limit=params["limit"],
        newest_first=params["order"] == "desc",
    )
    # Bars come only from existing instruments: the existence question is left for an empty answer.
    if not bars and not Instrument.objects.filter(pk=instrument_id).exists():
        return None
    return orjson.dumps({"instrument": instrument_id, "timeframe": timeframe, "bars": bars})

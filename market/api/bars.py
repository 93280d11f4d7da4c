"""The bars endpoint's fast path: rows straight from the database as epoch seconds and floats,
rendered once with orjson into the response body, and optionally cached until new bars arrive.

The rows come from `market.queries.bars_payload` (epoch seconds computed by the database, no model
instances); no serializer objects per row.

The cache (`API_BARS_CACHE_SECONDS` > 0) keeps whole response bodies, tagged with the instrument's
bar version; `invalidate_instrument_bars` changes that version, so every write path that stores bars
must call it after commit (a new 1m bar changes the rolled-up timeframes too, hence per instrument).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from django.conf import settings
from django.core.cache import cache

from market.models import Instrument
from market.queries import bars_payload

log = logging.getLogger(__name__)


def _version_key(instrument_id: int) -> str:
    return f"bars-version:{instrument_id}"


def invalidate_instrument_bars(instrument_id: int) -> None:
    """New or changed bars of this instrument: cached responses for any of its timeframes are stale.

    A fresh token rather than a counter: should the version key be evicted, a counter restarting at 1
    could match bodies cached under the old 1."""
    try:
        cache.set(_version_key(instrument_id), time.time_ns(), timeout=None)
    except Exception as exc:  # the cache is down: nothing can be served from it either
        log.warning("bars cache not invalidated for instrument %s: %s", instrument_id, exc)


def bars_body(instrument_id: int, timeframe: str, params: dict[str, Any]) -> bytes | None:
    """The response body of a bars request, from the cache when it is on and has it; None if there
    is no such instrument (only bodies of existing instruments are ever cached)."""
    seconds = settings.API_BARS_CACHE_SECONDS
    if seconds <= 0:
        return _render(instrument_id, timeframe, params)
    version_key = _version_key(instrument_id)
    body_key = (
        "bars-body:"
        + ":".join(
            str(part) for part in (instrument_id, timeframe, params.get("start"), params.get("end"), params["limit"])
        )
        + f":{params['order']}"
    )
    try:
        found = cache.get_many([version_key, body_key])
        version = found.get(version_key)
        cached = found.get(body_key)
        if version is not None and cached is not None and cached[0] == version:
            return cached[1]
        if version is None:
            version = time.time_ns()
            if not cache.add(version_key, version, timeout=None):
                version = cache.get(version_key)
    except Exception as exc:  # the cache is down: serve from the database
        log.warning("bars cache not read: %s", exc)
        return _render(instrument_id, timeframe, params)
    body = _render(instrument_id, timeframe, params)
    if body is None:
        return None
    try:
        cache.set(body_key, (version, body), timeout=seconds)
    except Exception as exc:
        log.warning("bars cache not written: %s", exc)
    return body


def _render(instrument_id: int, timeframe: str, params: dict[str, Any]) -> bytes | None:
    if not Instrument.objects.filter(pk=instrument_id).exists():
        return None
    bars = bars_payload(
        instrument_id,
        timeframe,
        start=params.get("start"),
        end=params.get("end"),
        limit=params["limit"],
        newest_first=params["order"] == "desc",
    )
    return orjson.dumps({"instrument": instrument_id, "timeframe": timeframe, "bars": bars})

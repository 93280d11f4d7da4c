"""Whole bars responses in the cache (Redis in production), dropped the moment an instrument's bars change.

Each instrument has a bar version in the cache; a body is stored with the version it was rendered
under and served only while that is still the instrument's version. `invalidate_cached_bars` gives
the instruments fresh versions: `market.services.bars_changed` calls it after every commit that
writes or deletes bars (stores, imports, backfill, roll-up, retention, admin edits). One version per
instrument, not per series: a new 1m bar changes the rolled-up timeframes too.

A body is keyed by the request's own query string (the bars parameters only), so a hit costs one
cache round trip and no validation: only bodies of valid requests for existing instruments are ever
stored, after the full check. The version is read before the bars are, so a body rendered from rows
older than the latest invalidation is stored under a version that is already stale.

The cache failing never fails a request: it is then read around (logged).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from prometheus_client import Counter

log = logging.getLogger(__name__)

# The hit rate on /metrics (docs/metrics.md): counted in each web process, summed by the scrape.
LOOKUPS = Counter(
    "cryptostock_bars_cache_lookups",
    "Bars requests looked up in the response cache: hit, miss (rendered, then stored), error (the cache "
    "failed; served from the database)",
    ["result"],
)

# The query parameters that shape a bars response (market.api.serializers.BarsQuerySerializer).
SHAPING_PARAMETERS = ("timeframe", "start", "end", "limit", "order")


@dataclass(frozen=True)
class CacheSlot:
    """Where one request's body lives in the cache, and the instrument's version when it was asked."""

    key: str
    version: int


def _version_key(instrument_id: int) -> str:
    return f"bars-version:{instrument_id}"


def _new_version() -> int:
    # A fresh token rather than a counter: should the version key be evicted, a counter restarting
    # at 1 could match bodies cached under the old 1.
    return time.time_ns()


def invalidate_cached_bars(instrument_ids: Iterable[int]) -> None:
    """These instruments' bars changed: every cached body of any of their timeframes is stale."""
    versions = {_version_key(instrument_id): _new_version() for instrument_id in set(instrument_ids)}
    if not versions:
        return
    try:
        cache.set_many(versions, timeout=None)
    except Exception as exc:  # the cache is down: nothing can be served from it either
        log.warning("bars cache not invalidated for instruments %s: %s", sorted(versions), exc)


def _body_key(instrument_id: int, query: Mapping[str, str]) -> str:
    shape = repr(tuple(query.get(name) for name in SHAPING_PARAMETERS))
    return f"bars-body:{instrument_id}:{hashlib.blake2b(shape.encode(), digest_size=16).hexdigest()}"


def cached_body(query: Mapping[str, str]) -> tuple[bytes | None, CacheSlot | None]:
    """(the cached body for this query string or None, the slot to store a freshly rendered one in).

    No slot when the cache is off, failing, or the query names no instrument id it could key by (the
    request is then answered, or refused, without the cache)."""
    if settings.API_BARS_CACHE_SECONDS <= 0:
        return None, None
    instrument = query.get("instrument", "")
    if not (instrument.isascii() and instrument.isdigit() and 0 < len(instrument) <= 19):
        return None, None
    instrument_id = int(instrument)
    version_key, body_key = _version_key(instrument_id), _body_key(instrument_id, query)
    try:
        found = cache.get_many([version_key, body_key])
        version, cached = found.get(version_key), found.get(body_key)
        if version is not None and cached is not None and cached[0] == version:
            LOOKUPS.labels("hit").inc()
            return cached[1], None
        if version is None:
            version = _new_version()
            if not cache.add(version_key, version, timeout=None):
                version = cache.get(version_key)
    except Exception as exc:  # the cache is down: serve from the database
        LOOKUPS.labels("error").inc()
        log.warning("bars cache not read: %s", exc)
        return None, None
    LOOKUPS.labels("miss").inc()
    return None, CacheSlot(body_key, version) if version is not None else None


def store_body(slot: CacheSlot, body: bytes) -> None:
    try:
        cache.set(slot.key, (slot.version, body), timeout=settings.API_BARS_CACHE_SECONDS)
    except Exception as exc:
        log.warning("bars cache not written: %s", exc)

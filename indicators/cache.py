"""Historical indicator series, computed on demand and cached per chunk in the Django cache (Redis
in production), keyed so that a new or changed bar invalidates exactly what it changes.

Layout. Time is cut into chunks of `CHUNK_BARS` bars of the timeframe (aligned to the epoch). One
cache entry holds one indicator's values over one chunk, with the chunks its values were computed
from (the chunk itself and those holding its warm-up history) and a fingerprint of each: count,
newest time, sums of close and volume, and how many are final, read from the database.

Validity. On a request, one aggregate query fingerprints the chunks involved; an entry whose
recorded fingerprints all still hold is served, any other is recomputed. A new bar changes only
its own chunk's fingerprint, so it invalidates that chunk's entries (and those of later chunks
that drew history from it, normally none), nothing older. Fingerprints come from the data, not
from writers remembering to bump a version: the collector, imports, backfills and the roll-up all
write bars, and none of them has to know about this cache.

The fingerprint is taken before the bars are read, so a bar written in between makes the entry
stale at the next request instead of caching old values under a new fingerprint.

OBV is not cached: its value depends on every bar since the first, so it is computed from the
bars in range plus one database pass for its starting value (`queries.obv_at`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.core.cache import cache

from indicators import queries
from indicators.catalogue import IndicatorSpec
from indicators.compute import Context, compute
from indicators.series import FloatArray, IntArray

CHUNK_BARS = 1000
CACHE_SECONDS = 7 * 86_400
KEY_VERSION = "2"  # 2: session VWAP anchored to the exchange calendar's sessions


@dataclass(frozen=True, slots=True)
class Series:
    """One indicator's outputs at the bars `time` (epoch seconds); NaN where there is no value."""

    time: IntArray
    outputs: dict[str, FloatArray]


def chunk_span(chunk: int, bar_seconds: int) -> tuple[int, int]:
    length = CHUNK_BARS * bar_seconds
    return chunk * length, (chunk + 1) * length


def chunk_of(time: int, bar_seconds: int) -> int:
    return time // (CHUNK_BARS * bar_seconds)


def entry_key(instrument_id: int, timeframe: str, chunk: int, spec: IndicatorSpec, context: Context) -> str:
    digest = hashlib.sha1(f"{spec.canonical}|{context.calendar}".encode(), usedforsecurity=False).hexdigest()[:20]
    return f"ind:{KEY_VERSION}:{instrument_id}:{timeframe}:{chunk}:{digest}"


@dataclass
class SeriesRequest:
    instrument_id: int
    timeframe: str
    bar_seconds: int
    context: Context
    first: int  # time of the first bar asked for
    last: int  # time of the last bar asked for

    @property
    def chunks(self) -> range:
        return range(chunk_of(self.first, self.bar_seconds), chunk_of(self.last, self.bar_seconds) + 1)

    def span(self, chunk: int) -> tuple[int, int]:
        return chunk_span(chunk, self.bar_seconds)


def cached_series(request: SeriesRequest, specs: list[IndicatorSpec]) -> dict[str, Series]:
    """Every spec's series over the request's bars, from the cache where it is still valid."""
    cacheable = [spec for spec in specs if spec.name != "obv"]
    keys = {(spec.key, c): entry_key(request.instrument_id, request.timeframe, c, spec, request.context)
            for spec in cacheable for c in request.chunks}  # fmt: skip
    found: dict[str, Any] = cache.get_many(list(keys.values())) if keys else {}

    # Fingerprint the chunks the cached entries depend on and those a recomputation would read.
    history = max((spec.history_bars(request.bar_seconds) for spec in specs), default=0)
    first_chunk_start = request.span(request.chunks[0])[0]
    window_start = queries.nth_time_before(request.instrument_id, request.timeframe, first_chunk_start, history)
    needed = set(request.chunks) | set(
        range(chunk_of(window_start or first_chunk_start, request.bar_seconds), request.chunks[0])
    )
    for entry in found.values():
        needed |= set(entry["deps"])
    prints = queries.fingerprints(
        request.instrument_id, request.timeframe, {c: request.span(c) for c in sorted(needed)}
    )
    valid = {key: entry for key, entry in found.items() if all(prints.get(c) == fp for c, fp in entry["deps"].items())}

    stale = {(spec_key, c) for (spec_key, c), key in keys.items() if key not in valid}
    missing = sorted({c for _, c in stale})
    to_compute = [spec for spec in cacheable if any((spec.key, c) in stale for c in missing)]
    fresh = _compute_chunks(request, to_compute, missing, prints, history) if missing else {}
    cache.set_many({keys[k]: entry for k, entry in fresh.items() if entry["deps"] is not None}, CACHE_SECONDS)
    valid.update({keys[k]: entry for k, entry in fresh.items()})

    result: dict[str, Series] = {}
    for spec in specs:
        if spec.name == "obv":
            result[spec.key] = obv_series(request, spec)
        else:
            parts = [valid[keys[spec.key, c]] for c in request.chunks if keys[spec.key, c] in valid]
            result[spec.key] = _clip(_join(parts, spec), request.first, request.last)
    return result


def _compute_chunks(
    request: SeriesRequest, specs: list[IndicatorSpec], missing: list[int], prints: dict[int, Any], history: int
) -> dict[tuple[str, int], Any]:
    """Compute the missing chunks from one read of the bars, with `history` bars before the first."""
    start, end = request.span(missing[0])[0], request.span(missing[-1])[1]
    bars = queries.load_bars(request.instrument_id, request.timeframe, start, end, before=history)
    fresh: dict[tuple[str, int], Any] = {}
    seed_chunk = chunk_of(int(bars.time[0]), request.bar_seconds) if len(bars) else missing[0]
    for spec in specs:
        outputs = compute(spec, bars, request.context)
        for c in missing:
            deps: dict[int, Any] | None = {d: prints[d] for d in range(seed_chunk, c + 1) if d in prints}
            if deps is not None and len(deps) < c + 1 - seed_chunk:
                deps = None  # history reached a chunk that was not fingerprinted: serve, but do not cache
            inside = slice(*np.searchsorted(bars.time, request.span(c)))
            fresh[spec.key, c] = {
                "deps": deps,
                "time": bars.time[inside].copy(),
                "outputs": {name: values[inside].copy() for name, values in outputs.items()},
            }
    return fresh


def obv_series(request: SeriesRequest, spec: IndicatorSpec) -> Series:
    """OBV over the request's bars, continuing the series' OBV from its first stored bar."""
    bars = queries.load_bars(request.instrument_id, request.timeframe, request.first, request.last + 1)
    if len(bars) == 0:
        return Series(bars.time, {"obv": np.empty(0)})
    offset = queries.obv_at(request.instrument_id, request.timeframe, int(bars.time[0]), spec.values["source"])
    relative = compute(spec, bars, request.context)["obv"]
    return Series(bars.time, {"obv": relative + (offset - bars.volume[0])})


def _join(parts: list[dict[str, Any]], spec: IndicatorSpec) -> Series:
    names = [out.name for out in spec.definition.outputs]
    if not parts:
        return Series(np.empty(0, dtype=np.int64), {name: np.empty(0) for name in names})
    time = np.concatenate([part["time"] for part in parts])
    return Series(time, {name: np.concatenate([part["outputs"][name] for part in parts]) for name in names})


def _clip(series: Series, first: int, last: int) -> Series:
    inside = slice(*np.searchsorted(series.time, [first, last + 1]))
    return Series(series.time[inside], {name: values[inside] for name, values in series.outputs.items()})

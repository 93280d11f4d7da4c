"""What an incremental roll-up has to rebuild. Pure: no Django, no clock.

The roll-up is a cascade: 5m bars are built from 1m, 15m from 5m, 1h from 15m, 4h from 1h and 1d from
4h. Every step reads a handful of rows per bucket instead of all the 1m bars under it (a day is
6 four-hour bars, not 1,440 minutes), and the result is the same, because open/high/low/close/
volume/trades aggregate associatively (first, max, min, last, sum, sum) and a volume-weighted
price combines as sum(vwap * volume) / sum(volume). Every boundary is a multiple of the one below, so
a higher bucket never straddles a lower one.

The input is the list of changed 1m spans (the `PendingRollup` rows); the output, per step, the
spans of whole target buckets to rebuild. Exchange-traded instruments get their daily bar from the
session instead of the UTC day (see `market.sessions`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from market.sessions import Session
from market.timeframes import BASE_TIMEFRAME, bucket_start, parse_timeframe

# (target, source) in the order they must run: each source is complete before it is read.
ROLLUP_STEPS: tuple[tuple[str, str], ...] = (
    ("5m", BASE_TIMEFRAME),
    ("15m", "5m"),
    ("1h", "15m"),
    ("4h", "1h"),
    ("1d", "4h"),
)
ROLLED_UP_TIMEFRAMES = tuple(target for target, _ in ROLLUP_STEPS)
SESSION_TIMEFRAME = "1d"
# Session daily bars are built from 15m bars: US sessions open at :30 and close on the hour, both
# multiples of 15 minutes. A calendar whose sessions are not aligned falls back to 1m bars.
SESSION_SOURCES = ("15m", "5m", BASE_TIMEFRAME)


@dataclass(frozen=True, slots=True, order=True)
class Span:
    """Bars of one instrument with open times in [start, end)."""

    instrument_id: int
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class SessionBucket:
    """One session daily bar to rebuild: source bars in [open, close), labelled `label`."""

    instrument_id: int
    label: datetime
    open: datetime
    close: datetime


def changed_spans(pending: Iterable[tuple[int, datetime, datetime]]) -> list[Span]:
    """Merge pending rows (instrument, first and last 1m open time written) into disjoint spans."""
    minute = parse_timeframe(BASE_TIMEFRAME)
    return merge_spans(Span(instrument_id, first, last + minute) for instrument_id, first, last in pending)


def merge_spans(spans: Iterable[Span]) -> list[Span]:
    """Disjoint spans covering the same times, sorted; overlapping or touching spans are joined."""
    merged: list[Span] = []
    for span in sorted(spans):
        last = merged[-1] if merged else None
        if last is not None and last.instrument_id == span.instrument_id and span.start <= last.end:
            if span.end > last.end:
                merged[-1] = Span(last.instrument_id, last.start, span.end)
        else:
            merged.append(span)
    return merged


def bucket_spans(spans: Sequence[Span], timeframe: str) -> list[Span]:
    """The whole `timeframe` buckets that hold any part of `spans`, merged."""
    step = parse_timeframe(timeframe)
    widened = (
        Span(
            span.instrument_id,
            bucket_start(span.start, timeframe),
            bucket_start(span.end - timedelta(microseconds=1), timeframe) + step,
        )
        for span in spans
    )
    return merge_spans(widened)


def session_buckets(
    spans: Sequence[Span], sessions_between: Callable[[datetime, datetime], Sequence[Session]]
) -> list[SessionBucket]:
    """The session daily bars that hold any part of `spans` (all of one calendar)."""
    buckets: dict[tuple[int, datetime], SessionBucket] = {}
    for span in spans:
        for session in sessions_between(span.start, span.end):
            key = (span.instrument_id, session.label)
            buckets[key] = SessionBucket(span.instrument_id, session.label, session.open, session.close)
    return [buckets[key] for key in sorted(buckets)]


def session_source(buckets: Sequence[SessionBucket]) -> str:
    """The coarsest timeframe whose bars tile every one of these sessions exactly."""
    for timeframe in SESSION_SOURCES:
        if all(
            bucket_start(bucket.open, timeframe) == bucket.open
            and bucket_start(bucket.close, timeframe) == bucket.close
            for bucket in buckets
        ):
            return timeframe
    return BASE_TIMEFRAME


def _aligned(moment: datetime, timeframe: str) -> bool:
    return bucket_start(moment, timeframe) == moment


def is_live(time: datetime, timeframe: str, now: datetime) -> bool:
    """Whether a bar is the current one or the one that just closed: the ones a live chart shows.

    Roll-ups of backfilled history are not broadcast: a chart has no use for a bar from 2019.
    """
    return time + 2 * parse_timeframe(timeframe) > now

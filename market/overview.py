"""The numbers of one watchlist row: last price, change over a day, a sparkline. Pure: no Django.

Times are UTC epoch seconds. The day is the 24 hours before the newest bar, not before the wall
clock: a replayed recording or a market closed for the weekend still shows its last day of trading.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

DAY_SECONDS = 86_400
SPARKLINE_POINTS = 96  # one per quarter of an hour over a day
SPARKLINE_WIDTH = 120
SPARKLINE_HEIGHT = 32

# Which exchange's instruments each collector source feeds (`Source.exchange` of each adapter):
# a collector's health row names its source, and the watchlist shows it next to that exchange's instruments.
SOURCE_EXCHANGES = {
    "replay": "binance",
    "binance": "binance",
    "alpaca": "alpaca",
    "alpaca-crypto": "alpaca",
    "yahoo": "yahoo",
}


@dataclass(frozen=True)
class DaySummary:
    last: float | None
    last_time: int | None
    change_percent: float | None  # None when there is no price a day back to compare with
    reference: float | None  # the price the change is measured from
    sparkline: list[tuple[int, float]]  # (time, close), oldest first, at most SPARKLINE_POINTS


def summarize_day(closes: Sequence[tuple[int, float]]) -> DaySummary:
    """From (time, close) pairs oldest first, covering at least the last day: the row's numbers."""
    if not closes:
        return DaySummary(last=None, last_time=None, change_percent=None, reference=None, sparkline=[])
    last_time, last = closes[-1]
    day = [point for point in closes if point[0] > last_time - DAY_SECONDS]
    # The reference is the last close at or before a day ago when there is one, else the day's first.
    before = [point for point in closes if point[0] <= last_time - DAY_SECONDS]
    reference = before[-1][1] if before else day[0][1]
    has_reference = bool(before) or len(day) > 1
    change = (last - reference) / reference * 100 if has_reference and reference else None
    return DaySummary(
        last=last,
        last_time=last_time,
        change_percent=change,
        reference=reference if change is not None else None,
        sparkline=downsample(day),
    )


def downsample(points: Sequence[tuple[int, float]], count: int = SPARKLINE_POINTS) -> list[tuple[int, float]]:
    """At most `count` points: the last point of each equal slice of the time range, so the newest
    price is always the line's end."""
    if len(points) <= count:
        return list(points)
    first, last = points[0][0], points[-1][0]
    width = (last - first) / count or 1
    buckets: dict[int, tuple[int, float]] = {}
    for point in points:
        buckets[min(int((point[0] - first) / width), count - 1)] = point
    return [buckets[key] for key in sorted(buckets)]


def sparkline_path(
    points: Sequence[tuple[int, float]], width: int = SPARKLINE_WIDTH, height: int = SPARKLINE_HEIGHT
) -> str:
    """An SVG path drawing the closes across `width` x `height` (the highest close at the top);
    empty for fewer than two points. static/market/js/pages/sparkline.js draws the same line live."""
    if len(points) < 2:
        return ""
    times = [time for time, _ in points]
    values = [value for _, value in points]
    span_t = (times[-1] - times[0]) or 1
    low, high = min(values), max(values)
    span_v = (high - low) or 1
    pad = 1.0  # keeps the stroke inside the box at the extremes
    commands = []
    for index, (time, value) in enumerate(points):
        x = (time - times[0]) / span_t * width
        y = pad + (1 - (value - low) / span_v) * (height - 2 * pad) if high > low else height / 2
        commands.append(f"{'M' if index == 0 else 'L'}{x:.1f} {y:.1f}")
    return " ".join(commands)


def price_decimals(price: float | None, significant: int = 6) -> int:
    """Decimals to show a price with: `significant` digits of it, at least two for prices of one or
    more (189.50), at most ten (0.001413 -> 8: 0.00141300). static/market/js/pages/watchlist.js formats live prices
    with the decimals the page was rendered with."""
    if not price:
        return 2
    magnitude = math.floor(math.log10(abs(price)))
    decimals = max(0, significant - 1 - magnitude)
    return min(10, max(decimals, 2) if abs(price) >= 1 else decimals)


def collector_state(states: Sequence[tuple[str, bool]]) -> str:
    """One word for an exchange's feed from its collectors' (state, stale) pairs: the best of them.
    "none" when no collector reports for it."""
    if not states:
        return "none"
    ranked = ["streaming", "idle", "connecting", "starting", "backoff", "breaker-open", "stopped"]
    live = [state for state, stale in states if not stale]
    if not live:
        return "stale"
    return min(live, key=lambda state: ranked.index(state) if state in ranked else len(ranked))

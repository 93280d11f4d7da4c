"""Timeframes the product knows, as bar lengths. Pure: no Django imports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

# Ordered from shortest to longest; the first is the one collectors build from trades.
TIMEFRAMES: dict[str, timedelta] = {
    "1m": timedelta(minutes=1),
    "5m": timedelta(minutes=5),
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "4h": timedelta(hours=4),
    "1d": timedelta(days=1),
}
BASE_TIMEFRAME = "1m"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def timeframe_seconds(timeframe: str) -> int:
    return int(parse_timeframe(timeframe).total_seconds())


def parse_timeframe(timeframe: str) -> timedelta:
    try:
        return TIMEFRAMES[timeframe]
    except KeyError:
        known = ", ".join(TIMEFRAMES)
        raise ValueError(f"unknown timeframe {timeframe!r}; use one of {known}") from None


def bucket_start(moment: datetime, timeframe: str) -> datetime:
    """The UTC open time of the bar of `timeframe` that contains `moment` (aware datetime)."""
    seconds = timeframe_seconds(timeframe)
    elapsed = int((moment - _EPOCH).total_seconds())
    return _EPOCH + timedelta(seconds=elapsed - elapsed % seconds)

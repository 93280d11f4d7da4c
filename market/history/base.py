"""The interface every history client speaks, with rate limiting and retries. Pure: no Django.

A client answers one question: the bars of `symbol` in `timeframe` from `start` (inclusive) to `end`
(exclusive), one page at a time. A page says where the next one starts (`next_start`, and the
source's own cursor `next_token` where it has one), or that the span is done. Callers checkpoint
after every page and resume from the last checkpoint, so a page must never skip a bar.

Errors: `TransientHistoryError` (network, HTTP 429/5xx) is retried here with exponential backoff;
`HistoryError` (unknown symbol, bad credentials, unsupported timeframe) is not.
"""

from __future__ import annotations

import abc
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from market.timeframes import timeframe_seconds

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HistoryBar:
    """A bar as a source gives it, normalized: `time` is the UTC open time (aware); daily bars of
    exchange-traded instruments are labelled with their session date at 00:00 UTC."""

    time: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float
    trades: int | None = None
    vwap: float | None = None

    def problem(self) -> str | None:
        """Why the bar store would refuse this bar, or None."""
        prices = (self.open, self.high, self.low, self.close)
        if not all(math.isfinite(value) for value in (*prices, self.volume)):
            return "a value is not a finite number"
        if self.low <= 0:
            return "a price is not positive"
        if not self.low <= min(self.open, self.close) <= max(self.open, self.close) <= self.high:
            return "open/close outside low..high"
        if self.volume < 0:
            return "negative volume"
        return None


@dataclass(frozen=True)
class BarPage:
    """Bars in [start, end) sorted by time, and where to go on: `next_start` None means done."""

    bars: list[HistoryBar]
    next_start: datetime | None
    next_token: str = ""


class HistoryError(Exception):
    """A request that will not succeed by trying again (bad symbol, credentials, timeframe)."""


class TransientHistoryError(HistoryError):
    """A request that may succeed later (network, rate limit, server error)."""


@dataclass
class RateLimiter:
    """At most one request per `min_interval` seconds (on top of what a source's SDK does)."""

    min_interval: float
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    _last: float = field(default=-math.inf)

    def wait(self) -> None:
        delay = self._last + self.min_interval - self.clock()
        if delay > 0:
            self.sleep(delay)
        self._last = self.clock()


class HistoryClient(abc.ABC):
    #: The name used on the command line (`backfill --source NAME`).
    name: ClassVar[str]
    #: The capability map: timeframes this source can serve with our bucket conventions.
    timeframes: ClassVar[frozenset[str]]
    #: Attempts per page on transient errors, and the first backoff delay (doubling).
    attempts: ClassVar[int] = 5
    backoff: ClassVar[float] = 1.0

    def __init__(self, *, min_interval: float = 0.35, sleep: Callable[[float], None] = time.sleep) -> None:
        self.sleep = sleep
        self.limiter = RateLimiter(min_interval, sleep)

    def supports(self, symbol: str, timeframe: str) -> str | None:
        """Why `symbol`/`timeframe` cannot be served, or None."""
        if timeframe not in self.timeframes:
            served = ", ".join(sorted(self.timeframes, key=timeframe_seconds))
            return f"{self.name} serves {served}, not {timeframe}"
        return None

    def page(self, symbol: str, timeframe: str, start: datetime, end: datetime, token: str = "") -> BarPage:
        """One page of bars in [start, end), retried on transient errors; invalid bars are dropped."""
        reason = self.supports(symbol, timeframe)
        if reason is not None:
            raise HistoryError(reason)
        delay = self.backoff
        for attempt in range(1, self.attempts + 1):
            self.limiter.wait()
            try:
                page = self.fetch_page(symbol, timeframe, start, end, token)
            except TransientHistoryError as exc:
                if attempt == self.attempts:
                    raise
                log.warning("%s: %s; retrying in %.0f s (attempt %d)", self.name, exc, delay, attempt)
                self.sleep(delay)
                delay *= 2
                continue
            return BarPage(self._valid(symbol, page.bars, start, end), page.next_start, page.next_token)
        raise AssertionError("unreachable")

    @abc.abstractmethod
    def fetch_page(self, symbol: str, timeframe: str, start: datetime, end: datetime, token: str) -> BarPage:
        """One request to the source. Raise TransientHistoryError for what a retry may fix."""

    def _valid(self, symbol: str, bars: list[HistoryBar], start: datetime, end: datetime) -> list[HistoryBar]:
        valid = []
        for bar in bars:
            if not start <= bar.time < end:
                continue
            problem = bar.problem()
            if problem is None:
                valid.append(bar)
            else:
                log.warning("%s %s: dropped the bar of %s: %s", self.name, symbol, bar.time, problem)
        return sorted(valid, key=lambda bar: bar.time)

"""Staying polite to a failing source: a circuit breaker and exponential backoff with jitter.

Pure: no clock and no randomness of their own. Callers pass `now` (monotonic seconds) and the
backoff takes a random source, so both are exact to test.

The breaker counts consecutive failures (a refused or dropped connection, an HTTP 5xx or 429, a
stalled stream). At `failure_threshold` it opens: no attempt at all for `reset_seconds`. Then it is
half-open: one attempt goes through; success closes it, failure opens it again for another period.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


@dataclass(slots=True)
class CircuitBreaker:
    failure_threshold: int = 5
    reset_seconds: float = 60.0
    failures: int = 0
    opened_at: float | None = None
    times_opened: int = 0

    def state(self, now: float) -> BreakerState:
        if self.opened_at is None:
            return BreakerState.CLOSED
        if now - self.opened_at < self.reset_seconds:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    def allow(self, now: float) -> bool:
        """May an attempt be made now? (Closed or half-open.)"""
        return self.state(now) is not BreakerState.OPEN

    def seconds_until_attempt(self, now: float) -> float:
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.opened_at + self.reset_seconds - now)

    def record_success(self) -> None:
        self.failures = 0
        self.opened_at = None

    def record_failure(self, now: float) -> None:
        self.failures += 1
        half_open = self.opened_at is not None and now - self.opened_at >= self.reset_seconds
        if half_open or self.failures >= self.failure_threshold:
            if self.opened_at is None or half_open:
                self.times_opened += 1
            self.opened_at = now


@dataclass(slots=True)
class Backoff:
    """Delays for retry n = 0, 1, 2...: `base * factor**n`, capped at `cap`, minus up to `jitter`
    (a fraction) of it at random, so that many collectors restarting at once do not retry in step."""

    base: float = 1.0
    factor: float = 2.0
    cap: float = 60.0
    jitter: float = 0.5
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next_delay(self) -> float:
        # min() before the power would overflow for a long outage; the exponent is bounded instead.
        exponent = min(self.attempt, 64)
        delay = min(self.cap, self.base * self.factor**exponent)
        self.attempt += 1
        return delay * (1.0 - self.jitter * self.rng.random())

    def reset(self) -> None:
        self.attempt = 0

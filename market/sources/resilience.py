"""Reconnecting with exponential backoff and jitter behind a circuit breaker, for every live source.

An adapter writes one *session*: connect, catch up, stream until something breaks. `reconnecting`
runs sessions one after another for as long as the consumer iterates, waiting between them as the
backoff and the breaker say, and keeps the source's health up to date. A session ends normally only
when the source has nothing more to say (a finite recording); every failure, of whatever kind, is
logged, counted and followed by a new session: a collector never dies of a bad connection.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass

from market.circuit import Backoff, BreakerState, CircuitBreaker
from market.sources.base import Source, SourceEvent, SourceHealth, Subscription, as_subscription

log = logging.getLogger(__name__)


class SourceUnavailable(Exception):
    """A connection attempt failed or a connection broke (refused, HTTP 5xx/429, dropped, stalled)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a source treats failures; built from settings by the collect command."""

    breaker_failures: int = 5
    breaker_reset_seconds: float = 60.0
    backoff_base_seconds: float = 1.0
    backoff_max_seconds: float = 60.0
    #: No message at all for this long on an open connection: it is stalled; reconnect.
    stall_seconds: float = 30.0
    #: A session that streamed this long was healthy: its end starts the backoff from scratch.
    stable_seconds: float = 30.0

    def breaker(self) -> CircuitBreaker:
        return CircuitBreaker(self.breaker_failures, self.breaker_reset_seconds)

    def backoff(self) -> Backoff:
        return Backoff(base=self.backoff_base_seconds, cap=self.backoff_max_seconds)


Session = Callable[[bool], AsyncIterator[SourceEvent]]


async def reconnecting(
    name: str,
    session: Session,
    *,
    health: SourceHealth,
    policy: RetryPolicy,
    backoff: Backoff | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> AsyncGenerator[SourceEvent, None]:
    """Events of `session(reconnect)` calls, one after the other; `reconnect` is False the first time."""
    backoff = backoff or policy.backoff()
    breaker = health.breaker
    first = True
    while True:
        now = clock()
        if not breaker.allow(now):
            health.state = "breaker-open"
            wait = breaker.seconds_until_attempt(now)
            log.warning("%s: circuit open after %d failures; next attempt in %.1f s", name, breaker.failures, wait)
            await sleep(wait)
            continue
        health.state = "connecting"
        started = clock()
        streaming = False
        retry_after: float | None = None
        try:
            async for event in session(not first):
                if not streaming:
                    streaming = True
                    health.state = "streaming"
                    if breaker.state(clock()) is BreakerState.HALF_OPEN:
                        breaker.record_success()
                yield event
            health.state = "stopped"
            return
        except SourceUnavailable as exc:
            retry_after = exc.retry_after
            health.last_error = str(exc)
            log.warning("%s: %s", name, exc)
        except Exception as exc:  # any failure of a session means: wait, then reconnect
            health.last_error = f"{exc.__class__.__name__}: {exc}"
            if _is_connection_error(exc):
                log.warning("%s: connection failed: %s", name, health.last_error)
            else:
                log.exception("%s: unexpected error in the session; reconnecting", name)
        first = False
        health.reconnects += 1
        ended = clock()
        if streaming and ended - started >= policy.stable_seconds:
            # It was a healthy connection that broke, not one more failure in a row.
            breaker.record_success()
            backoff.reset()
        breaker.record_failure(ended)
        delay = max(backoff.next_delay(), retry_after or 0.0)
        health.state = "backoff"
        log.info("%s: reconnecting in %.2f s (attempt %d)", name, delay, backoff.attempt)
        await sleep(delay)


def _is_connection_error(exc: BaseException) -> bool:
    import aiohttp
    import websockets

    return isinstance(exc, OSError | TimeoutError | websockets.WebSocketException | aiohttp.ClientError)


class ReconnectingSource(Source):
    """A live source that writes one session (`_session`) and streams by running sessions one after
    another (`reconnecting`) for the subscribed symbols, which may change while it streams."""

    policy: RetryPolicy
    _subscription: Subscription | None = None

    async def stream(self, symbols: Mapping[str, int | None]) -> AsyncGenerator[SourceEvent, None]:
        self._subscription = as_subscription(symbols)
        events = reconnecting(self.name, self._session, health=self.health, policy=self.policy)
        try:
            async for event in events:
                yield event
        finally:
            await events.aclose()

    @property
    def subscription(self) -> Subscription:
        """The symbols being streamed; only while `stream` runs."""
        if self._subscription is None:
            raise RuntimeError(f"{self.name}: a session runs only inside stream()")
        return self._subscription

    @abc.abstractmethod
    def _session(self, reconnect: bool) -> AsyncIterator[SourceEvent]:
        """Connect, catch up (when `reconnect`), then stream until something breaks."""

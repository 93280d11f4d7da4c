"""The pure pieces that keep collectors going: circuit breaker, backoff with jitter, the reconnect
loop, market hours, the source clock and reconciliation with the exchange's bars."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from market.bars import MinuteBar
from market.circuit import Backoff, BreakerState, CircuitBreaker
from market.market_hours import MarketHours, validate_calendar
from market.reconcile import Verdict, reconcile
from market.sources.base import ClockEvent, ExchangeBar, MinuteClock, SourceHealth
from market.sources.resilience import RetryPolicy, SourceUnavailable, reconnecting


def test_the_breaker_opens_after_the_threshold_and_half_opens_after_the_reset_time():
    breaker = CircuitBreaker(failure_threshold=3, reset_seconds=10)
    for now in (0, 1):
        breaker.record_failure(now)
        assert breaker.state(now) is BreakerState.CLOSED
    breaker.record_failure(2)
    assert breaker.state(2) is BreakerState.OPEN
    assert not breaker.allow(11.9)
    assert breaker.seconds_until_attempt(7) == 5
    assert breaker.state(12) is BreakerState.HALF_OPEN
    assert breaker.allow(12)


def test_a_failure_while_half_open_opens_it_again_and_a_success_closes_it():
    breaker = CircuitBreaker(failure_threshold=1, reset_seconds=10)
    breaker.record_failure(0)
    breaker.record_failure(10)  # the half-open attempt failed
    assert breaker.state(15) is BreakerState.OPEN
    assert breaker.times_opened == 2
    breaker.record_success()
    assert breaker.state(15) is BreakerState.CLOSED
    assert breaker.failures == 0


def test_backoff_grows_exponentially_up_to_the_cap_with_jitter_below_the_nominal_delay():
    backoff = Backoff(base=1, factor=2, cap=10, jitter=0.5, rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(7)]
    nominal = [1, 2, 4, 8, 10, 10, 10]
    assert all(n / 2 <= d <= n for d, n in zip(delays, nominal, strict=True))
    assert len({round(d, 6) for d in delays[4:]}) == 3  # jittered: not in step
    backoff.reset()
    assert backoff.next_delay() <= 1


def test_backoff_without_jitter_is_exact():
    backoff = Backoff(base=0.5, factor=3, cap=100, jitter=0)
    assert [backoff.next_delay() for _ in range(4)] == [0.5, 1.5, 4.5, 13.5]


async def test_the_reconnect_loop_backs_off_opens_the_breaker_and_recovers():
    # Given a session that fails four times, then streams two events
    clock = [0.0]
    slept: list[float] = []
    attempts: list[bool] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    async def session(reconnect: bool):
        attempts.append(reconnect)
        if len(attempts) <= 4:
            raise SourceUnavailable("refused", retry_after=3.0 if len(attempts) == 2 else None)
        yield ClockEvent(1)
        yield ClockEvent(2)

    health = SourceHealth()
    policy = RetryPolicy(breaker_failures=3, breaker_reset_seconds=30, backoff_base_seconds=1, backoff_max_seconds=8)
    health.breaker = policy.breaker()
    backoff = Backoff(base=1, cap=8, jitter=0)
    events = [
        event
        async for event in reconnecting(
            "test", session, health=health, policy=policy, backoff=backoff, clock=lambda: clock[0], sleep=sleep
        )
    ]

    # Then it retried with growing delays (honouring Retry-After), waited out the open breaker once,
    # and the events came through
    assert events == [ClockEvent(1), ClockEvent(2)]
    assert attempts == [False, True, True, True, True]
    assert slept[:3] == [1, 3.0, 4]
    assert health.breaker.times_opened >= 1
    assert health.reconnects == 4
    assert health.state == "stopped"


def test_market_hours_follow_the_nyse_calendar_with_its_holidays_and_early_closes():
    hours = MarketHours("XNYS")
    early_close = hours.state(datetime(2024, 7, 3, 16, 59, tzinfo=UTC))
    assert early_close.open
    assert early_close.next_change == datetime(2024, 7, 3, 17, 0, tzinfo=UTC)  # 13:00 New York
    independence_day = hours.state(datetime(2024, 7, 4, 15, 0, tzinfo=UTC))
    assert not independence_day.open
    assert independence_day.next_change == datetime(2024, 7, 5, 13, 30, tzinfo=UTC)
    assert not hours.is_open(datetime(2024, 7, 6, 15, 0, tzinfo=UTC))  # Saturday


def test_an_unknown_calendar_is_refused_by_name():
    assert validate_calendar("XNYS") == "XNYS"
    with pytest.raises(ValueError, match="unknown exchange calendar 'NOPE'"):
        validate_calendar("NOPE")


def test_the_source_clock_announces_each_minute_once_and_keeps_time_while_quiet():
    clock = MinuteClock(lag_ms=500)
    clock.observe(10_000)
    assert clock.due() is None  # the first observation only sets the next boundary
    clock.observe(60_400)
    assert clock.due() is None  # not yet past the boundary by the lag
    clock.observe(60_600)
    assert clock.due() == ClockEvent(60_100)
    assert clock.due() is None
    # Quiet: 61 s without a message still reaches the next boundary
    assert clock.due(elapsed_ms=60_000) == ClockEvent(120_100)


def ours(o, h, low, c, v) -> MinuteBar:
    return MinuteBar(0, o, h, low, c, v, 1, o * v)


def theirs(o, h, low, c, v, covered=None) -> ExchangeBar:
    return ExchangeBar(0, o, h, low, c, v, closed=True, covered=covered)


def test_reconciliation_ignores_rounding_and_reports_real_differences():
    assert reconcile(ours(1, 2, 0.5, 1.5, 0.1 + 0.2), theirs(1, 2, 0.5, 1.5, 0.3)).verdict is Verdict.MATCH
    result = reconcile(ours(1, 2, 0.5, 1.5, 10), theirs(1, 2.5, 0.5, 1.5, 10))
    assert result.verdict is Verdict.MISMATCH
    assert result.differences == ("high 2 != 2.5",)


def test_a_minute_we_only_partly_saw_must_lie_within_the_exchanges_bar():
    inside = reconcile(ours(1, 1.5, 0.8, 1.2, 5), theirs(1, 2, 0.5, 1.5, 10, covered=False))
    assert inside.verdict is Verdict.INCOMPLETE
    outside = reconcile(ours(1, 3, 0.8, 1.2, 5), theirs(1, 2, 0.5, 1.5, 10, covered=False))
    assert outside.verdict is Verdict.MISMATCH


def test_no_bar_of_ours_is_missing_unless_the_exchanges_minute_was_empty():
    assert reconcile(None, theirs(1, 1, 1, 1, 0)).verdict is Verdict.EMPTY
    assert reconcile(None, theirs(1, 1, 1, 1, 3)).verdict is Verdict.MISSING

"""Fixtures of the accounts tests."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest


class Clock:
    """The rate limiter's clock, moved by the test, starting at a random whole minute: the counters
    live in the shared cache, so every test counts in windows of its own."""

    def __init__(self) -> None:
        # From the system, not the seeded module state: a plugin that reseeds random per test would
        # give every test the same minute.
        self.now = float(random.SystemRandom().randrange(2_000_000_000, 3_000_000_000, 60))

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch, settings) -> Clock:
    """Rate limits on, counted by a clock the test moves (`clock.now += 60`: the next window)."""
    settings.RATELIMIT_ENABLE = True
    clock = Clock()
    monkeypatch.setattr("django_ratelimit.core.time", SimpleNamespace(time=clock.time))
    return clock

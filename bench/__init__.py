"""Benchmarks: `python -m bench.run [names...]`; see bench/README.md.

A benchmark is a module `bench/bench_<name>.py` with `run() -> Iterable[dict]`, each dict built by
`measurement()`. Benchmarks run against a scratch database that bench.run creates and drops.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any


class BenchUnavailable(Exception):
    """A benchmark cannot run here (e.g. it needs PostgreSQL); the runner reports it and goes on."""


def measurement(name: str, value: float, unit: str, baseline: float | None = None) -> dict[str, Any]:
    """One result line. `baseline` is the value of what `value` is compared with; ratio = value / baseline."""
    return {
        "name": name,
        "value": round(value, 1),
        "unit": unit,
        "baseline": None if baseline is None else round(baseline, 1),
        "ratio": None if not baseline else round(value / baseline, 3),
    }


def best_rates_interleaved(count: int, runs: Sequence[Callable[[], object]], rounds: int) -> list[float]:
    """`best_rate` of each of `runs`, their rounds interleaved, so that a change in the machine's load
    weighs on all of them alike: for a run measured side by side with its baseline."""
    best = [0.0] * len(runs)
    for _ in range(rounds):
        for index, run in enumerate(runs):
            started = time.perf_counter()
            run()
            best[index] = max(best[index], count / (time.perf_counter() - started))
    return best


def best_rate(count: int, run: Callable[[], object], rounds: int) -> float:
    """`count` divided by the fastest of `rounds` timed calls of `run`: things per second at best,
    since on a shared machine the slower rounds measure the neighbours as much as the code."""
    best = 0.0
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        best = max(best, count / (time.perf_counter() - started))
    return best

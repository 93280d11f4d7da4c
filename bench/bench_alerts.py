"""Alerts: 10,000 active rules across 100 instruments, judged on one bar close of every instrument.

The engine (`alerts.engine.evaluate`, rules compiled once into a RuleBook) side by side with the
baseline a first implementation would write: a Python loop over the rules that computes each
rule's own series (the same indicator functions) and compares plain floats. Both must fire exactly
the same rules, which the benchmark checks. Goal: under 100 ms for all 10,000 and at least 10x the
naive loop. Compiling the rules (done when rules change, not per bar) is reported on its own.

The bars are real: 100 overlapping 700-bar windows of UNITTEST/BTC's 13,681 1m candles (freqtrade's
test data), each scaled to its own price so that levels differ. The rules are a seeded random mix
of every bar rule type: price levels, crossings, moves, channels, volume spikes, RSI, MACD against
its signal, and EMA/SMA crossings, with levels near each instrument's price so that some fire.
Runs are short (median of a few) because the machine is shared; numbers are wall-clock times.

`python -m bench.run alerts`, or `python -m bench.bench_alerts` (no database needed).
"""

from __future__ import annotations

import math
import random
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from alerts.rules import RuleSpec
from bench import measurement

INSTRUMENTS = 100
RULES_PER_INSTRUMENT = 100
WINDOW = 700  # bars per instrument: EMA 50, the longest memory in the mix, needs 685
TIMEFRAME = "1m"
NOW = 2_000_000_000.0
SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "freqtrade" / "UNITTEST_BTC-1m.feather"


def instrument_bars() -> dict[tuple[int, str], Any]:
    from alerts.engine import Bars

    real = pd.read_feather(SAMPLE)
    seconds = real["date"].dt.as_unit("s").astype("int64").to_numpy()
    step = (len(real) - WINDOW) // INSTRUMENTS
    bars = {}
    for instrument in range(1, INSTRUMENTS + 1):
        part = real.iloc[(instrument - 1) * step :][:WINDOW]
        scale = 10.0**instrument % 997 + 1  # a different price scale per instrument
        o, h, low, c = (part[column].to_numpy() * scale for column in ("open", "high", "low", "close"))
        bars[(instrument, TIMEFRAME)] = Bars.from_columns(seconds[part.index], o, h, low, c, part["volume"].to_numpy())
    return bars


def make_rules(bars: dict[tuple[int, str], Any], seed: int = 8) -> list[Any]:
    from alerts.rules import Condition, Frequency, Operand

    rng = random.Random(seed)
    rsi = Operand.parse({"indicator": "rsi", "length": 14})
    macd = Operand.parse({"indicator": "macd"})
    signal = Operand.parse({"indicator": "macd", "output": "signal"})
    emas = [Operand.parse({"indicator": "ema", "length": n}) for n in (9, 20, 50)]
    smas = [Operand.parse({"indicator": "sma", "length": n}) for n in (20, 50)]
    crossings = [Condition.CROSSING_UP, Condition.CROSSING_DOWN, Condition.CROSSING]
    specs: list[RuleSpec] = []
    for (instrument, timeframe), feed in bars.items():
        close = float(feed.close[-1])
        for _ in range(RULES_PER_INSTRUMENT):
            rule_id = len(specs) + 1
            kind = rng.randrange(9)
            params: dict[str, Any]
            near = close * (1 + rng.uniform(-0.004, 0.004))
            common: dict[str, Any] = {
                "frequency": rng.choice(list(Frequency)),
                "cooldown_seconds": rng.choice([0, 300]),
            }
            if kind == 0:
                params = {"condition": rng.choice(crossings), "level": near}
            elif kind == 1:
                params = {"condition": rng.choice([Condition.GREATER_THAN, Condition.LESS_THAN]), "level": near}
            elif kind == 2:
                up = rng.random() < 0.5
                params = {
                    "condition": Condition.MOVING_UP_PERCENT if up else Condition.MOVING_DOWN_PERCENT,
                    "percent": rng.choice([0.1, 0.5, 1, 2]),
                    "bars": rng.choice([5, 10, 20]),
                }
            elif kind == 3:
                lower = close * (1 - rng.uniform(0, 0.005))
                params = {
                    "condition": rng.choice([Condition.ENTERING_CHANNEL, Condition.EXITING_CHANNEL]),
                    "level": lower,
                    "upper": lower + close * rng.uniform(0.001, 0.01),
                }
            elif kind == 4:
                params = {"condition": Condition.VOLUME_SPIKE, "multiplier": rng.choice([2, 3, 5]), "bars": 20}
            elif kind in (5, 6):
                condition = rng.choice([*crossings, Condition.GREATER_THAN, Condition.LESS_THAN])
                params = {"condition": condition, "source": rsi, "level": rng.choice([30, 50, 70])}
            elif kind == 7:
                params = {"condition": rng.choice(crossings), "source": macd, "target": signal}
            else:
                fast, slow = sorted(rng.sample([*emas, *smas], 2), key=lambda o: dict(o.params)["length"])
                params = {"condition": rng.choice(crossings), "source": fast, "target": slow}
            specs.append(RuleSpec(rule_id, instrument, timeframe, **params, **common))
    return specs


Plan = list[tuple[Any, Any, int, Any, int, float, float]]


def naive_plan(specs: list[Any]) -> Plan:
    """Per rule, what the naive loop reads: its source series, its target series (or None and a
    constant), the target's scale, and how many bars each series needs. Prepared once, outside the
    timing, as the engine's compile step is."""
    from alerts.rules import CHANNELS, COMPARISONS, Condition
    from alerts.series import field_key, lag_key, operand_key, volume_average_key, warmup_bars

    plan = []
    for spec in specs:
        source, target, constant, scale = operand_key(spec.source), None, math.nan, 1.0
        if spec.condition in COMPARISONS:
            target = operand_key(spec.target) if spec.target is not None else None
            constant = math.nan if spec.level is None else spec.level
        elif spec.condition in CHANNELS:
            constant = spec.level
        elif spec.condition is Condition.VOLUME_SPIKE:
            source, target, scale = field_key("volume"), volume_average_key(spec.bars), spec.multiplier
        else:
            up = spec.condition is Condition.MOVING_UP_PERCENT
            target, scale = lag_key(source, spec.bars), 1 + spec.percent / 100 * (1 if up else -1)
        needed = [warmup_bars(key, 60) if key is not None and key[0] == "ind" else WINDOW for key in (source, target)]
        plan.append((spec, source, needed[0], target, needed[1], constant, scale))
    return plan


def naive_evaluate(plan: Plan, bars: dict[tuple[int, str], Any], now: float, last_fired: dict[int, float]) -> set[int]:
    """The baseline: one rule at a time, its own series computed for it (over just the bars each
    needs, read the same way as the engine reads them), compared as Python floats."""
    from alerts.rules import Frequency, is_intrabar
    from alerts.series import last_two
    from indicators.series import Bars as IndicatorBars

    def operand(key: Any, feed: Any, needed: int) -> tuple[float, float]:
        start = max(0, len(feed.time) - needed)
        columns = IndicatorBars(
            feed.time[start:],
            feed.open[start:],
            feed.high[start:],
            feed.low[start:],
            feed.close[start:],
            feed.volume[start:],
        )
        return last_two(key, columns, {})

    fired = set()
    for spec, source, source_needed, target, target_needed, constant, scale in plan:
        feed = bars[spec.feed]
        a_cur, a_prev = operand(source, feed, source_needed)
        if target is None:
            b_cur = b_prev = constant
        else:
            b_cur, b_prev = (value * scale for value in operand(target, feed, target_needed))
        bar_time = float(feed.time[-1])
        last = last_fired.get(spec.id, math.nan)
        allowed = (
            spec.active
            and (spec.expires_at is None or now < spec.expires_at)
            and (feed.final or is_intrabar(spec))
            and (math.isnan(last) or (bar_time > last and bar_time >= last + spec.cooldown_seconds))
            and not (spec.frequency is Frequency.ONCE and not math.isnan(last))
        )
        if allowed and _naive_condition(spec.condition, a_cur, a_prev, b_cur, b_prev, spec.upper):
            fired.add(spec.id)
    return fired


def _naive_condition(condition: Any, a: float, a_prev: float, b: float, b_prev: float, upper: Any) -> bool:
    from alerts.rules import CHANNELS, Condition

    if condition in CHANNELS:
        was_inside = b_prev <= a_prev <= upper
        inside = b <= a <= upper
        if math.isnan(a_prev) or math.isnan(a):
            return False
        return (not was_inside and inside) if condition is Condition.ENTERING_CHANNEL else (was_inside and not inside)
    up = a_prev <= b_prev and a > b
    down = a_prev >= b_prev and a < b
    return {
        Condition.CROSSING_UP: up,
        Condition.CROSSING_DOWN: down,
        Condition.CROSSING: up or down,
        Condition.GREATER_THAN: a > b,
        Condition.LESS_THAN: a < b,
        Condition.VOLUME_SPIKE: a > b,
        Condition.MOVING_UP_PERCENT: a >= b,
        Condition.MOVING_DOWN_PERCENT: a <= b,
    }[condition]


def interleaved_ms(first: Callable[[], object], second: Callable[[], object], repeat: int) -> list[tuple[float, float]]:
    """Median wall-clock and CPU milliseconds of two functions run in turn, so that both see the
    same load from whatever else the shared machine is doing: [(wall, cpu) of first, of second]."""
    first(), second()  # warm up
    samples: list[list[tuple[float, float]]] = [[], []]
    for _ in range(repeat):
        for fn, bucket in zip((first, second), samples, strict=True):
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            bucket.append((time.perf_counter() - wall, time.process_time() - cpu))
    return [
        (statistics.median(w for w, _ in bucket) * 1e3, statistics.median(c for _, c in bucket) * 1e3)
        for bucket in samples
    ]


def run() -> Iterator[dict[str, Any]]:
    from alerts.engine import compile_rules, evaluate

    bars = instrument_bars()
    specs = make_rules(bars)
    # A quarter of the rules fired a while ago, so cooldowns and ONCE are exercised too.
    rng = random.Random(1)
    last_fired = {
        spec.id: float(bars[spec.feed].time[-1] - rng.choice([60, 600])) for spec in specs if rng.random() < 0.25
    }

    book = compile_rules(specs)
    assert max(book.lookback.values()) <= WINDOW, "the windows are shorter than the rules need"
    last = book.last_fired_array(last_fired)
    plan = naive_plan(specs)
    ours = {f.rule_id for f in evaluate(book, bars, now=NOW, last_fired=last)}
    naive = naive_evaluate(plan, bars, NOW, last_fired)
    if ours != naive:
        raise AssertionError(f"engine and naive loop disagree on {len(ours ^ naive)} rules")

    (engine_ms, engine_cpu), (naive_ms, naive_cpu) = interleaved_ms(
        lambda: evaluate(book, bars, now=NOW, last_fired=last),
        lambda: naive_evaluate(plan, bars, NOW, last_fired),
        repeat=5,
    )
    [(compile_ms, _), _] = interleaved_ms(lambda: compile_rules(specs), lambda: None, repeat=3)
    rules = len(specs)
    yield measurement("alerts.evaluate_10k_rules_100_instruments_ms", engine_ms, "ms", naive_ms)
    yield measurement("alerts.evaluate_rules_per_second", rules / engine_ms * 1e3, "rules/s", rules / naive_ms * 1e3)
    # CPU time of this process only: what the comparison is when the machine is busy with other work.
    yield measurement("alerts.evaluate_10k_rules_100_instruments_cpu_ms", engine_cpu, "ms", naive_cpu)
    yield measurement("alerts.compile_10k_rules_ms", compile_ms, "ms")
    yield measurement("alerts.rules_fired", len(ours), "rules")


if __name__ == "__main__":
    import json
    import os

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cryptostock.settings")
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key")
    for line in run():
        print(json.dumps(line), flush=True)

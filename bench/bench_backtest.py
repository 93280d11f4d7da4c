"""Backtests: the engine over a million bars against a plain pandas computation of the same returns,
and the whole service (bars loaded from the database, then the engine) against the bare load.

Engine: an SMA crossover (fast 10, slow 30; fee 10 bps, slippage 5 bps per side) over 1,000,000 1m
bars (UNITTEST/BTC's real candles chained, as in bench_indicators). The baseline is the textbook
pandas version, given the same signal: positions = signal.shift(1), per-bar returns = position *
the change of the fill price (open to next open; the last bar to its close, where an open position
is closed), and each change of position charged its costs. It computes the total return only; the
engine also builds the trades, the per-bar equity curve and every metric. Both total returns are
printed, and must agree (relative difference printed too). The costs are charged as the engine
charges them: buying with all the cash pays the fee out of it (x 1/(1 + fee)), selling pays it
from the proceeds (x (1 - fee)); slippage moves each fill price against the trade.

Service: the million bars stored in the scratch database, then `backtest.services.simulate` (the
read path of the bars API, final bars as numpy columns, the strategy's signals, the engine) against
the bare read of the same rows (`market.queries.read_series_rows`, what the bars endpoint runs).

Wall-clock times, best of a few runs in turns; the machine may be shared, so compare within a run.
`python -m bench.run backtest`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd

from bench import measurement
from bench.bench_indicators import BARS, million_bars

FEE_BPS, SLIPPAGE_BPS = 10.0, 5.0
PARAMS = {"fast": 10, "slow": 30}


def best_seconds(candidates: dict[str, Callable[[], object]], rounds: int = 5) -> dict[str, float]:
    """Best time of each, run in turns so that a busy moment hits them alike."""
    best = dict.fromkeys(candidates, float("inf"))
    for fn in candidates.values():
        fn()
    for _ in range(rounds):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def pandas_total_return(bars: Any, signal: Any, fee_bps: float, slippage_bps: float) -> float:
    """The strategy's total return the straightforward pandas way (see the module docstring)."""
    fee, slip = fee_bps * 1e-4, slippage_bps * 1e-4
    fill = pd.Series(np.append(bars.open, bars.close[-1]))  # bar j's fill price; n: the last close
    position = pd.Series(signal, dtype=float).shift(1).fillna(0.0)
    returns = position * fill.pct_change().shift(-1).iloc[:-1]
    change = pd.concat([position, pd.Series([0.0])], ignore_index=True).diff().fillna(position.iloc[0])
    costs = np.where(change > 0, 1 / ((1 + fee) * (1 + slip)), np.where(change < 0, (1 - fee) * (1 - slip), 1.0))
    growth = (1.0 + returns).prod() * np.prod(costs)
    return float(growth - 1.0)


def exact(name: str, value: float, unit: str) -> dict[str, Any]:
    """A measurement line with every digit (`measurement` rounds to one decimal)."""
    return {**measurement(name, 0.0, unit), "value": value}


def engine() -> Iterator[dict[str, Any]]:
    from backtest.engine import Calendar, Costs, run_backtest
    from backtest.strategies import STRATEGIES

    bars = million_bars()
    strategy = STRATEGIES["sma_cross"]
    params = strategy.resolve(PARAMS)
    entries, exits = strategy.signals(bars, params)
    signal = entries  # long exactly while fast > slow: the entry array is the position decided at each close
    costs = Costs(10_000.0, FEE_BPS, SLIPPAGE_BPS)
    calendar = Calendar(60)

    ours = run_backtest(bars, entries, exits, costs, calendar)
    theirs = pandas_total_return(bars, signal, FEE_BPS, SLIPPAGE_BPS)
    # Compared as growth (1 + return): with this many trades the costs take nearly everything, and
    # a return of -99.99...% hides the digits where the two could differ.
    growth, their_growth = 1.0 + ours.metrics["total_return"], 1.0 + theirs
    yield exact("backtest.sma_cross_1m_bars.growth", growth, "x")
    yield exact("backtest.sma_cross_1m_bars.pandas_growth", their_growth, "x")
    yield exact("backtest.sma_cross_1m_bars.growth_relative_difference", abs(growth / their_growth - 1.0), "ratio")
    yield measurement("backtest.sma_cross_1m_bars.trades", ours.metrics["trades"], "trades")

    seconds = best_seconds(
        {
            "engine": lambda: run_backtest(bars, entries, exits, costs, calendar),
            "pandas": lambda: pandas_total_return(bars, signal, FEE_BPS, SLIPPAGE_BPS),
            "strategy": lambda: run_backtest(bars, *strategy.signals(bars, params), costs, calendar),
        }
    )
    yield measurement("backtest.pandas_returns_1m_bars", BARS / seconds["pandas"], "bars/s")
    yield measurement("backtest.engine_1m_bars.vs_pandas", BARS / seconds["engine"], "bars/s", BARS / seconds["pandas"])
    yield measurement("backtest.engine_1m_bars_ms", seconds["engine"] * 1e3, "ms")
    yield measurement("backtest.signals_and_engine_1m_bars_ms", seconds["strategy"] * 1e3, "ms")


def service() -> Iterator[dict[str, Any]]:
    from datetime import UTC, datetime

    from backtest import services
    from backtest.engine import Costs
    from market.models import Exchange, Instrument
    from market.queries import read_series_rows
    from market.services import store_bar_frame

    bars = million_bars()
    exchange = Exchange.objects.create(code="benchbt", name="Bench")
    instrument = Instrument.objects.create(exchange=exchange, symbol="BENCH/BTC")
    frame = pd.DataFrame(
        {
            "time": pd.to_datetime(bars.time, unit="s", utc=True),
            **{column: getattr(bars, column) for column in ("open", "high", "low", "close", "volume")},
        }
    )
    started = time.perf_counter()
    store_bar_frame(frame, instrument_id=instrument.pk, timeframe="1m")
    yield measurement("backtest.setup_store_1m_bars_s", time.perf_counter() - started, "s")
    spec = services.RunSpec(
        instrument=instrument,
        timeframe="1m",
        start=datetime(2000, 1, 1, tzinfo=UTC),
        end=None,
        strategy="sma_cross",
        parameters=PARAMS,
        costs=Costs(10_000.0, FEE_BPS, SLIPPAGE_BPS),
    )
    _, loaded = services.simulate(spec)
    assert len(loaded) == BARS, len(loaded)
    seconds = best_seconds(
        {
            "load": lambda: read_series_rows(instrument.pk, "1m", spec.start, None, BARS + 1, descending=False),
            "service": lambda: services.simulate(spec),
        },
        rounds=3,
    )
    yield measurement("backtest.bare_load_1m_bars_ms", seconds["load"] * 1e3, "ms")
    yield measurement("backtest.service_1m_bars_ms", seconds["service"] * 1e3, "ms")
    yield measurement(
        "backtest.service_1m_bars.vs_bare_load", BARS / seconds["service"], "bars/s", BARS / seconds["load"]
    )


def run() -> Iterator[dict[str, Any]]:
    yield from engine()
    yield from service()

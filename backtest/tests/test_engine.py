"""The engine on small hand-worked examples, and its properties on real bars. No database."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from backtest.engine import (
    BacktestError,
    Calendar,
    Costs,
    downsample,
    max_drawdown,
    position_from_signals,
    run_backtest,
    sharpe,
    sortino,
)
from backtest.strategies import STRATEGIES
from backtest.tests.conftest import btc_bars, make_bars, signals_at

FREE = Costs(initial_cash=1000.0, fee_bps=0.0, slippage_bps=0.0)
HOURLY = Calendar(3600)


def test_a_position_follows_the_last_signal_with_exit_winning_a_tie():
    entries = np.array([0, 1, 0, 1, 0, 1, 0], dtype=bool)
    exits = np.array([1, 0, 0, 0, 1, 1, 0], dtype=bool)

    assert position_from_signals(entries, exits).tolist() == [False, True, True, True, False, False, False]


def test_a_signal_fills_at_the_next_bars_open_and_equity_marks_each_close():
    bars = make_bars(open=[10, 11, 12, 13, 14], close=[10.5, 11.5, 12.5, 13.5, 14.5])
    entries, exits = signals_at(5, entries=[0], exits=[2])

    result = run_backtest(bars, entries, exits, FREE, HOURLY)

    quantity = 1000 / 11
    [trade] = result.trades.as_records()
    assert trade["entry_time"] == bars.time[1]
    assert trade["exit_time"] == bars.time[3]
    assert (trade["entry_price"], trade["exit_price"]) == (11.0, 13.0)
    assert trade["quantity"] == pytest.approx(quantity)
    assert trade["bars_held"] == 2
    assert not trade["closed_at_end"]
    assert trade["pnl"] == pytest.approx(quantity * 13 - 1000)
    assert result.equity.tolist() == pytest.approx(
        [1000, quantity * 11.5, quantity * 12.5, quantity * 13, quantity * 13]
    )
    assert result.in_market.tolist() == [False, True, True, False, False]
    assert result.metrics["exposure"] == pytest.approx(2 / 5)


def test_fees_and_slippage_are_paid_on_each_side():
    bars = make_bars(open=[10, 11, 12, 13, 14], close=[10.5, 11.5, 12.5, 13.5, 14.5])
    entries, exits = signals_at(5, entries=[0], exits=[2])
    costs = Costs(initial_cash=1000.0, fee_bps=10.0, slippage_bps=20.0)

    [trade] = run_backtest(bars, entries, exits, costs, HOURLY).trades.as_records()

    entry_price, exit_price = 11 * 1.002, 13 * 0.998
    quantity = 1000 / (entry_price * 1.001)  # the fee comes out of the cash too
    proceeds = quantity * exit_price * 0.999
    assert trade["entry_price"] == pytest.approx(entry_price)
    assert trade["exit_price"] == pytest.approx(exit_price)
    assert trade["quantity"] == pytest.approx(quantity)
    assert trade["fees"] == pytest.approx(quantity * entry_price * 0.001 + quantity * exit_price * 0.001)
    assert trade["pnl"] == pytest.approx(proceeds - 1000)
    assert trade["return"] == pytest.approx(proceeds / 1000 - 1)


def test_a_position_open_at_the_end_is_closed_at_the_last_close_with_costs():
    bars = make_bars(open=[10, 11, 12], close=[10.5, 11.5, 12.5])
    entries, exits = signals_at(3, entries=[0], exits=[])
    costs = Costs(initial_cash=1000.0, fee_bps=10.0, slippage_bps=0.0)

    result = run_backtest(bars, entries, exits, costs, HOURLY)

    [trade] = result.trades.as_records()
    quantity = 1000 / (11 * 1.001)
    assert trade["closed_at_end"]
    assert trade["exit_price"] == 12.5
    assert trade["exit_time"] == bars.time[2]
    assert result.equity[-1] == pytest.approx(quantity * 12.5 * 0.999)
    assert result.metrics["final_equity"] == pytest.approx(quantity * 12.5 * 0.999)


def test_a_signal_on_the_last_bar_is_never_filled():
    bars = make_bars(open=[10, 11, 12], close=[10, 11, 12])
    entries, exits = signals_at(3, entries=[2], exits=[])

    result = run_backtest(bars, entries, exits, FREE, HOURLY)

    assert len(result.trades) == 0
    assert result.metrics["total_return"] == 0.0
    assert result.metrics["exposure"] == 0.0


def test_profits_compound_from_trade_to_trade():
    bars = make_bars(open=[10, 10, 20, 10, 20, 20], close=[10, 10, 20, 10, 20, 20])
    entries, exits = signals_at(6, entries=[0, 2], exits=[1, 4])

    result = run_backtest(bars, entries, exits, FREE, HOURLY)

    # 1000 buys 100 at 10, sold at 20; the 2000 buys 200 at 10, sold at 20.
    assert result.trades.quantity.tolist() == pytest.approx([100.0, 200.0])
    assert result.trades.pnl.tolist() == pytest.approx([1000.0, 2000.0])
    assert result.metrics["final_equity"] == pytest.approx(4000.0)
    assert result.metrics["win_rate"] == 1.0
    assert result.metrics["profit_factor"] is None  # no losing trade: undefined, not infinite


def test_trade_metrics_count_wins_and_losses():
    bars = make_bars(open=[10, 10, 12, 12, 9, 9, 10], close=[10, 10, 12, 12, 9, 9, 10])
    entries, exits = signals_at(7, entries=[0, 2], exits=[1, 4])

    metrics = run_backtest(bars, entries, exits, FREE, HOURLY).metrics

    # Trade 1: 10 -> 12, +200 on 1000. Trade 2: 1200 at 12 -> 9, -300.
    assert metrics["trades"] == 2
    assert metrics["win_rate"] == 0.5
    assert metrics["profit_factor"] == pytest.approx(200 / 300)
    assert metrics["average_trade_return"] == pytest.approx((0.2 - 0.25) / 2)
    assert metrics["average_trade_pnl"] == pytest.approx((200 - 300) / 2)
    assert metrics["total_return"] == pytest.approx(900 / 1000 - 1)


def test_max_drawdown_is_the_deepest_fall_from_a_peak_and_its_longest_time_under_water():
    equity = np.array([100, 120, 90, 110, 130, 100.0])

    drawdown, bars_under_water = max_drawdown(equity)

    assert drawdown == pytest.approx(0.25)
    assert bars_under_water == 2
    assert max_drawdown(np.array([1.0, 2.0, 3.0])) == (0.0, 0)


def test_sharpe_and_sortino_annualize_per_bar_returns_with_a_zero_risk_free_rate():
    returns = np.array([0.01, -0.02, 0.03, 0.0])

    assert sharpe(returns, 365) == pytest.approx(0.005 / np.std(returns, ddof=1) * math.sqrt(365))
    assert sortino(returns, 365) == pytest.approx(0.005 / math.sqrt(0.02**2 / 4) * math.sqrt(365))
    assert sharpe(np.zeros(5), 365) is None
    assert sortino(np.array([0.01, 0.02]), 365) is None


def test_cagr_and_volatility_come_from_the_equity_curve():
    # 400 bars spanning exactly 365.25 days, doubling once: a 100% CAGR.
    n = 400
    opens = np.full(n, 10.0)
    opens[-1] = 20.0
    bars = make_bars(open=opens, close=opens, bar_seconds=int(365.25 * 86_400) // n)
    entries, exits = signals_at(n, entries=[0], exits=[n - 2])

    metrics = run_backtest(bars, entries, exits, FREE, Calendar(int(365.25 * 86_400) // n)).metrics

    assert metrics["total_return"] == pytest.approx(1.0)
    assert metrics["cagr"] == pytest.approx(1.0)
    equity = np.array([1000.0] * (n - 1) + [2000.0])
    returns = equity[1:] / equity[:-1] - 1
    assert metrics["annual_volatility"] == pytest.approx(np.std(returns, ddof=1) * math.sqrt(400))


def test_bad_inputs_are_refused_with_a_reason():
    bars = make_bars(open=[10, 11], close=[10, 11])
    with pytest.raises(BacktestError, match="at least 2 bars"):
        run_backtest(make_bars(open=[10], close=[10]), *signals_at(1, [0], []), FREE, HOURLY)
    with pytest.raises(BacktestError, match="one value per bar"):
        run_backtest(bars, *signals_at(3, [0], []), FREE, HOURLY)
    with pytest.raises(BacktestError, match="initial_cash"):
        run_backtest(bars, *signals_at(2, [0], []), Costs(initial_cash=0), HOURLY)


# --- Properties on real bars ---------------------------------------------------------------------


def test_buy_and_hold_without_costs_earns_the_last_close_over_the_second_open():
    bars = btc_bars(3000)
    strategy = STRATEGIES["buy_and_hold"]

    metrics = run_backtest(bars, *strategy.signals(bars, {}), FREE, Calendar(60)).metrics

    assert metrics["total_return"] == pytest.approx(bars.close[-1] / bars.open[1] - 1, rel=1e-12)
    assert metrics["buy_and_hold_return"] == pytest.approx(metrics["total_return"], rel=1e-12)
    assert metrics["exposure"] == pytest.approx((len(bars) - 1) / len(bars))


@pytest.mark.parametrize("name", ["sma_cross", "ema_cross", "rsi_reversion", "bollinger_reversion"])
def test_changing_bars_from_t_on_changes_nothing_decided_before_t(name):
    bars = btc_bars(3000)
    strategy = STRATEGIES[name]
    params = strategy.resolve({})
    costs = Costs(initial_cash=1000.0, fee_bps=10.0, slippage_bps=5.0)
    before = run_backtest(bars, *strategy.signals(bars, params), costs, Calendar(60))
    rng = np.random.default_rng(7)

    for t in (500, 1500, 2500):
        future = bars.__class__(
            bars.time, *(_scrambled(getattr(bars, c), t, rng) for c in ("open", "high", "low", "close", "volume"))
        )
        after = run_backtest(future, *strategy.signals(future, params), costs, Calendar(60))

        done = before.trades.exit_index < t
        assert done.sum() > 0
        for column in ("entry_index", "exit_index", "entry_price", "exit_price", "quantity", "pnl", "fees"):
            assert getattr(after.trades, column)[: done.sum()].tolist() == getattr(before.trades, column)[done].tolist()
        # A position entered at bar t was decided at bar t - 1's close: still entered, at t's new open.
        assert after.trades.entry_index[after.trades.entry_index <= t].tolist() == (
            before.trades.entry_index[before.trades.entry_index <= t].tolist()
        )
        assert after.equity[:t].tolist() == before.equity[:t].tolist()


def _scrambled(column: Any, t: int, rng: Any) -> Any:
    changed = column.copy()
    changed[t:] *= rng.uniform(0.8, 1.25, len(column) - t)
    return changed


def test_every_strategy_trades_real_bars_and_its_books_balance():
    bars = btc_bars()
    costs = Costs(initial_cash=10_000.0, fee_bps=10.0, slippage_bps=5.0)
    for name, strategy in STRATEGIES.items():
        result = run_backtest(bars, *strategy.signals(bars, strategy.resolve({})), costs, Calendar(60))
        metrics = result.metrics

        assert metrics["trades"] > 0, name
        assert metrics["final_equity"] == pytest.approx(10_000 + result.trades.pnl.sum()), name
        assert metrics["exposure"] == pytest.approx(result.trades.bars_held.sum() / len(bars)), name
        assert 0 <= metrics["max_drawdown"] < 1, name
        assert (result.trades.fees > 0).all(), name


def test_a_curve_is_downsampled_evenly_keeping_its_ends():
    time = np.arange(10_001, dtype=np.int64)
    values = np.arange(10_001, dtype=np.float64)

    _, sampled = downsample(time, values, 101)

    assert len(sampled) == 101
    assert sampled[0] == 0
    assert sampled[-1] == 10_000
    assert np.diff(sampled).tolist() == [100.0] * 100
    assert downsample(time[:5], values[:5], 101)[1].tolist() == [0, 1, 2, 3, 4]

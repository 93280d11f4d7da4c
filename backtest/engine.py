"""The backtest engine: a strategy's signals over bars to trades, an equity curve and metrics.

Pure: no Django imports, no database, no clock (as freqtrade has it, a backtest never touches the
database). Long only, all in: a position buys with all the cash there is and sells all of it.

The model of execution (docs/backtest.md says the same, with the formulas):
- A signal is decided on a bar's close and filled at the NEXT bar's open: the strategy cannot trade
  at a price it used to decide. A signal on the last bar has no next bar and is not filled.
- An entry pays open * (1 + slippage), an exit gets open * (1 - slippage); each side pays the fee on
  its notional (fill price * quantity). The entry quantity is what the cash buys with its fee:
  cash / (fill * (1 + fee)).
- A position still open after the last bar is closed at the last close (with slippage and fee), and
  its trade says `closed_at_end`.
- Equity is marked to market at each bar's close (cash while flat, quantity * close while long),
  except that the last bar's equity is after the forced close.

Vectorised with numpy over bars; the quantities compound from trade to trade, which is a cumulative
product over trades, not a loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from indicators.series import Bars, FloatArray, IntArray

BoolArray = NDArray[np.bool_]
BPS = 1e-4
SECONDS_PER_YEAR = 365.25 * 86_400
TRADING_DAYS = 252
SESSION_SECONDS = 6.5 * 3600


class BacktestError(ValueError):
    """The inputs cannot be backtested (too few bars, signals of the wrong length, bad costs)."""


@dataclass(frozen=True, slots=True)
class Costs:
    """What trading costs and what it starts with. Fees and slippage in basis points per side."""

    initial_cash: float = 10_000.0
    fee_bps: float = 10.0
    slippage_bps: float = 0.0


@dataclass(frozen=True, slots=True)
class Calendar:
    """How long a bar is and whether the market trades around the clock: what annualizes."""

    bar_seconds: int
    around_the_clock: bool = True

    @property
    def periods_per_year(self) -> float:
        return periods_per_year(self.bar_seconds, around_the_clock=self.around_the_clock)


@dataclass(frozen=True, slots=True)
class Trades:
    """One entry per round trip, as columns: times are epoch seconds (the fill bars' open times;
    for a trade closed at the end, the last bar's open time), prices the fill prices."""

    entry_index: IntArray
    exit_index: IntArray  # the bar whose open filled the exit; n for a trade closed at the end
    entry_time: IntArray
    exit_time: IntArray
    entry_price: FloatArray
    exit_price: FloatArray
    quantity: FloatArray
    pnl: FloatArray  # cash after the exit minus cash before the entry (fees included)
    returns: FloatArray  # pnl / cash before the entry
    fees: FloatArray  # both sides' fees
    bars_held: IntArray  # bars the position was held through (entry bar included, exit bar not)
    closed_at_end: BoolArray

    def __len__(self) -> int:
        return len(self.entry_index)

    def as_records(self) -> list[dict[str, Any]]:
        """Plain JSON-ready dicts, one per trade."""
        columns = {
            "entry_time": self.entry_time.tolist(),
            "exit_time": self.exit_time.tolist(),
            "entry_price": self.entry_price.tolist(),
            "exit_price": self.exit_price.tolist(),
            "quantity": self.quantity.tolist(),
            "pnl": self.pnl.tolist(),
            "return": self.returns.tolist(),
            "fees": self.fees.tolist(),
            "bars_held": self.bars_held.tolist(),
            "closed_at_end": self.closed_at_end.tolist(),
        }
        return [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]


@dataclass(frozen=True, slots=True)
class Result:
    trades: Trades
    equity: FloatArray  # per bar, see the module docstring
    in_market: BoolArray  # per bar: a position was held through the bar
    metrics: dict[str, Any]


def position_from_signals(entries: BoolArray, exits: BoolArray) -> BoolArray:
    """Long after each bar's close or not: the last signal so far decides, an exit when both fire.

    The same as a loop that enters when flat on an entry and exits when long on an exit (long only,
    an entry while long and an exit while flat change nothing), without the loop: of the bars with
    a signal, only those whose signal differs from the previous one change the position, and the
    position is the running count of those changes, odd while long.
    """
    events = np.flatnonzero(entries | exits)
    wants_long = entries[events] & ~exits[events]
    flips = events[np.diff(wants_long.astype(np.int8), prepend=np.int8(0)) != 0]
    toggles = np.zeros(len(entries), dtype=np.int8)
    toggles[flips] = 1
    return (np.cumsum(toggles, dtype=np.int32) & 1).astype(bool)


def run_backtest(bars: Bars, entries: BoolArray, exits: BoolArray, costs: Costs, calendar: Calendar) -> Result:
    """Trades, equity and metrics of trading `bars` on the signals, decided at each bar's close."""
    n = len(bars)
    _check_inputs(n, entries, exits, costs)
    fee, slippage = costs.fee_bps * BPS, costs.slippage_bps * BPS
    # held[j]: a position is held through bar j, decided at bar j - 1's close.
    held = np.zeros(n, dtype=bool)
    held[1:] = position_from_signals(np.asarray(entries, dtype=bool), np.asarray(exits, dtype=bool))[:-1]
    change = np.diff(held.astype(np.int8), prepend=np.int8(0))
    entry_index = np.flatnonzero(change == 1)
    exit_index = np.flatnonzero(change == -1)
    closed_at_end = np.zeros(len(entry_index), dtype=bool)
    if len(exit_index) < len(entry_index):
        exit_index = np.append(exit_index, n)
        closed_at_end[-1] = True

    entry_price = bars.open[entry_index] * (1.0 + slippage)
    exit_reference = np.where(closed_at_end, bars.close[-1], bars.open[np.minimum(exit_index, n - 1)])
    exit_price = exit_reference * (1.0 - slippage)
    # Each round trip multiplies the cash by what one unit of cash buys and sells back for.
    growth = exit_price * (1.0 - fee) / (entry_price * (1.0 + fee))
    cash_after = costs.initial_cash * np.cumprod(growth)
    cash_before = np.concatenate([[costs.initial_cash], cash_after[:-1]])
    quantity = cash_before / (entry_price * (1.0 + fee))
    trades = Trades(
        entry_index=entry_index,
        exit_index=exit_index,
        entry_time=bars.time[entry_index],
        exit_time=bars.time[np.minimum(exit_index, n - 1)],
        entry_price=entry_price,
        exit_price=exit_price,
        quantity=quantity,
        pnl=cash_after - cash_before,
        returns=growth - 1.0,
        fees=quantity * (entry_price + exit_price) * fee,
        bars_held=exit_index - entry_index,
        closed_at_end=closed_at_end,
    )
    cash_levels = np.concatenate([[costs.initial_cash], cash_after])
    equity = _equity(bars.close, held, entry_index, exit_index, quantity, cash_levels)
    return Result(trades, equity, held, compute_metrics(bars, equity, held, trades, costs, calendar))


def _check_inputs(n: int, entries: Any, exits: Any, costs: Costs) -> None:
    if n < 2:
        raise BacktestError(f"a backtest needs at least 2 bars (signals fill at the next bar's open), got {n}")
    if len(entries) != n or len(exits) != n:
        raise BacktestError(f"signals must have one value per bar ({n}), got {len(entries)} and {len(exits)}")
    check_costs(costs)


def check_costs(costs: Costs) -> None:
    """BacktestError unless the cash is positive and each cost is in [0, 10000) basis points."""
    if not (costs.initial_cash > 0 and np.isfinite(costs.initial_cash)):
        raise BacktestError("initial_cash must be a positive number")
    if not (0 <= costs.fee_bps < 10_000 and 0 <= costs.slippage_bps < 10_000):
        raise BacktestError("fee_bps and slippage_bps must be at least 0 and below 10000")


def _equity(
    close: FloatArray,
    held: BoolArray,
    entry_index: IntArray,
    exit_index: IntArray,
    quantity: FloatArray,
    cash_levels: FloatArray,
) -> FloatArray:
    """Per bar: the quantity of the current trade times the close while long; otherwise the cash after
    the trades completed so far (cash_levels[k] after k trades). The last bar after a forced close.

    Bars fall into runs, flat and long in turn, each starting at an entry or an exit: one value per
    run (cash, or the trade's quantity) repeated over it, then multiplied by the close where long.
    """
    n = len(close)
    starts = np.concatenate([[0], np.ravel(np.column_stack([entry_index, exit_index]))])
    values = np.concatenate([[cash_levels[0]], np.ravel(np.column_stack([quantity, cash_levels[1:]]))])
    if len(exit_index) and exit_index[-1] == n:  # closed at the end: no flat run after it
        starts, values = starts[:-1], values[:-1]
    equity = np.repeat(values, np.diff(np.append(starts, n)))
    np.multiply(equity, close, out=equity, where=held)
    if held[-1]:
        equity[-1] = cash_levels[-1]
    return equity


# --- Metrics -------------------------------------------------------------------------------------


def periods_per_year(bar_seconds: int, *, around_the_clock: bool = True) -> float:
    """Bars in a year of trading: 365.25 days of 24 hours for markets that never close (crypto);
    252 trading days of one 6.5-hour regular session for stocks and indices (daily and longer bars:
    252 days' worth)."""
    if around_the_clock:
        return SECONDS_PER_YEAR / bar_seconds
    if bar_seconds >= 86_400:
        return TRADING_DAYS * 86_400 / bar_seconds
    return TRADING_DAYS * SESSION_SECONDS / bar_seconds


def compute_metrics(
    bars: Bars, equity: FloatArray, held: BoolArray, trades: Trades, costs: Costs, calendar: Calendar
) -> dict[str, Any]:
    """Every metric of docs/backtest.md ("Metrics"), as JSON-ready numbers; None where undefined."""
    n = len(equity)
    returns = equity[1:] / equity[:-1] - 1.0  # per bar from bar 1 (bar 0 is flat: equity = initial cash)
    per_year = calendar.periods_per_year
    deviation = float(np.std(returns, ddof=1)) if len(returns) > 1 else None
    span_seconds = int(bars.time[-1] - bars.time[0]) + calendar.bar_seconds
    drawdown, duration = max_drawdown(equity)
    final = float(equity[-1])
    wins, losses = trades.pnl[trades.pnl > 0], trades.pnl[trades.pnl < 0]
    return {
        "initial_cash": costs.initial_cash,
        "final_equity": final,
        "total_return": final / costs.initial_cash - 1.0,
        "cagr": cagr(final / costs.initial_cash, span_seconds),
        "annual_volatility": None if deviation is None else _finite(deviation * np.sqrt(per_year)),
        "sharpe": sharpe(returns, per_year, deviation),
        "sortino": sortino(returns, per_year),
        "max_drawdown": drawdown,
        "max_drawdown_bars": duration,
        "max_drawdown_seconds": duration * calendar.bar_seconds,
        "trades": len(trades),
        "win_rate": len(wins) / len(trades) if len(trades) else None,
        "profit_factor": float(wins.sum() / -losses.sum()) if len(losses) else None,
        "average_trade_return": float(trades.returns.mean()) if len(trades) else None,
        "average_trade_pnl": float(trades.pnl.mean()) if len(trades) else None,
        "fees_paid": float(trades.fees.sum()),
        "exposure": float(held.mean()),
        "buy_and_hold_return": float(bars.close[-1] / bars.open[1] - 1.0),
        "bars": n,
        "periods_per_year": per_year,
    }


def _finite(value: Any) -> float | None:
    number = float(value)
    return number if np.isfinite(number) else None


def cagr(growth: float, span_seconds: int) -> float | None:
    """Compound annual growth over calendar time; None without time or after losing everything."""
    if span_seconds <= 0 or growth <= 0:
        return None
    try:
        return _finite(growth ** (SECONDS_PER_YEAR / span_seconds) - 1.0)
    except OverflowError:  # a big gain over a few hours: no meaningful yearly rate
        return None


def sharpe(returns: FloatArray, periods_per_year: float, deviation: float | None = None) -> float | None:
    """Mean over sample standard deviation of the per-bar returns, times sqrt(periods per year);
    risk-free rate 0. None with fewer than 2 returns or no variation."""
    if len(returns) < 2:
        return None
    if deviation is None:
        deviation = float(np.std(returns, ddof=1))
    if not deviation > 0:
        return None
    return _finite(np.mean(returns) / deviation * np.sqrt(periods_per_year))


def sortino(returns: FloatArray, periods_per_year: float) -> float | None:
    """Mean over downside deviation, sqrt(mean(min(r, 0)^2)) over every bar, times sqrt(periods per
    year); target 0. None with fewer than 2 returns or no losing bar."""
    if len(returns) < 2:
        return None
    downside = np.sqrt(np.mean(np.minimum(returns, 0.0) ** 2))
    if not downside > 0:
        return None
    return _finite(np.mean(returns) / downside * np.sqrt(periods_per_year))


def max_drawdown(equity: FloatArray) -> tuple[float, int]:
    """The largest fall from a running peak, as a fraction of the peak (0.25: a quarter lost), and the
    longest time under water in bars: from the bar after a peak until equity is back at it (or the end)."""
    peak = np.maximum.accumulate(equity)
    drawdown = float(np.max(1.0 - equity / peak))
    # Bars at a peak; the bars between two of them (or after the last one) are under water.
    at_peak = np.flatnonzero(equity >= peak)
    return drawdown, int(np.max(np.diff(np.append(at_peak, len(equity))) - 1))


def downsample(time: IntArray, values: FloatArray, points: int) -> tuple[IntArray, FloatArray]:
    """At most `points` of a curve, evenly spaced by index, always the first and the last."""
    n = len(values)
    if n <= points:
        return time, values
    index = np.unique(np.linspace(0, n - 1, points).round().astype(np.int64))
    return time[index], values[index]

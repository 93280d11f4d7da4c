"""Metrics as a table for people (the command's output). Pure: no Django imports."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def _percent(value: float) -> str:
    return f"{value:.2%}"


def _number(value: float) -> str:
    return f"{value:,.4f}"


def _money(value: float) -> str:
    return f"{value:,.2f}"


def _count(value: float) -> str:
    return f"{int(value):,}"


# (metric, label, format), in the order docs/backtest.md defines them.
ROWS: tuple[tuple[str, str, Callable[[float], str]], ...] = (
    ("initial_cash", "Initial cash", _money),
    ("final_equity", "Final equity", _money),
    ("total_return", "Total return", _percent),
    ("buy_and_hold_return", "Buy and hold return", _percent),
    ("cagr", "CAGR", _percent),
    ("annual_volatility", "Annualized volatility", _percent),
    ("sharpe", "Sharpe ratio", _number),
    ("sortino", "Sortino ratio", _number),
    ("max_drawdown", "Max drawdown", _percent),
    ("max_drawdown_bars", "Max drawdown duration (bars)", _count),
    ("trades", "Trades", _count),
    ("win_rate", "Win rate", _percent),
    ("profit_factor", "Profit factor", _number),
    ("average_trade_return", "Average trade return", _percent),
    ("average_trade_pnl", "Average trade P&L", _money),
    ("fees_paid", "Fees paid", _money),
    ("exposure", "Exposure", _percent),
    ("bars", "Bars", _count),
)


def metrics_table(metrics: Mapping[str, Any]) -> str:
    """One metric a line, label and value aligned; `n/a` where a metric is undefined (None)."""
    width = max(len(label) for _, label, _ in ROWS)
    lines = []
    for key, label, render in ROWS:
        value = metrics.get(key)
        lines.append(f"{label:<{width}}  {'n/a' if value is None else render(value)}")
    return "\n".join(lines)

"""Backtests of strategies over stored bars."""

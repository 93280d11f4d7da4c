"""A backtest: one strategy with its parameters over one instrument's stored bars, and its outcome.

The row is what lists show (status, settings, metrics); the trades and the full equity curve live
in `BacktestResult`, one row per finished backtest, read only by the result endpoint. Money and
prices are floats, as bar prices are (see `market.models`): the engine computes in float64.

Invariants the database keeps: positive initial cash, costs in [0, 10000) basis points, a start
before the end, known statuses and strategies, at most one result per backtest.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from django.conf import settings
from django.db import models
from django.db.models import Q

from backtest.strategies import STRATEGIES
from market.models import TIMEFRAME_CHOICES, Instrument


class Status(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


STRATEGY_CHOICES = [(name, strategy.title) for name, strategy in STRATEGIES.items()]


class Backtest(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="backtests")
    instrument = models.ForeignKey(Instrument, on_delete=models.CASCADE, related_name="backtests")
    timeframe = models.CharField(max_length=4, choices=TIMEFRAME_CHOICES)
    start = models.DateTimeField(
        null=True, blank=True, help_text="First bar's open time at or after; empty: from the first bar"
    )
    end = models.DateTimeField(null=True, blank=True, help_text="Bars opening before this time; empty: to the last bar")
    strategy = models.CharField(max_length=32, choices=STRATEGY_CHOICES)
    parameters = models.JSONField(default=dict, blank=True, help_text="Every parameter, defaults filled in")
    initial_cash = models.FloatField(default=10_000.0)
    fee_bps = models.FloatField(default=10.0, help_text="Fee per side, basis points of the notional")
    slippage_bps = models.FloatField(default=0.0, help_text="Price moved against each fill, basis points")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    error = models.TextField(blank=True)
    metrics = models.JSONField(null=True, blank=True)
    bars_used = models.IntegerField(null=True, blank=True)
    first_bar_time = models.DateTimeField(null=True, blank=True)
    last_bar_time = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["owner", "-created_at"], name="backtest_owner_newest")]
        constraints = [
            models.CheckConstraint(condition=Q(initial_cash__gt=0), name="backtest_positive_cash"),
            models.CheckConstraint(
                condition=Q(fee_bps__gte=0, fee_bps__lt=10_000, slippage_bps__gte=0, slippage_bps__lt=10_000),
                name="backtest_costs_in_range",
            ),
            models.CheckConstraint(
                condition=Q(start__isnull=True) | Q(end__isnull=True) | Q(start__lt=models.F("end")),
                name="backtest_start_before_end",
            ),
            models.CheckConstraint(condition=Q(status__in=Status.values), name="backtest_known_status"),
            models.CheckConstraint(condition=Q(strategy__in=list(STRATEGIES)), name="backtest_known_strategy"),
        ]

    def __str__(self) -> str:
        return f"{self.strategy} on {self.instrument_id} {self.timeframe} (#{self.pk})"


class BacktestResult(models.Model):
    """Trades as JSON records; the equity curve per bar as raw little-endian arrays (int64 epoch
    seconds, float64 equity): a million bars are 16 MB as bytes, several times that as JSON."""

    backtest = models.OneToOneField(Backtest, on_delete=models.CASCADE, primary_key=True, related_name="result")
    trades = models.JSONField(default=list)
    equity_time = models.BinaryField()
    equity_value = models.BinaryField()

    def __str__(self) -> str:
        return f"result of backtest #{self.pk}"

    def equity_curve(self) -> tuple[Any, Any]:
        """(times, values) as numpy arrays."""
        return (
            np.frombuffer(bytes(self.equity_time), dtype="<i8"),
            np.frombuffer(bytes(self.equity_value), dtype="<f8"),
        )

"""Shapes and validation of backtests and their results. No business logic here: the strategy
catalogue checks the parameters, the service runs the backtest."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from django.conf import settings
from django.urls import reverse
from drf_spectacular.utils import inline_serializer
from rest_framework import serializers

from backtest import services
from backtest.engine import Costs
from backtest.models import Backtest, Status
from backtest.strategies import STRATEGIES, get_strategy
from cryptostock.api_fields import StrictTextMixin
from indicators.catalogue import ParamError
from market.api.serializers import MAX_ID, reject_empty_span
from market.models import Instrument

MAX_COST_BPS = 1000  # 10% per side: beyond any real venue; the engine itself accepts up to 10000
MAX_CASH = 1e15


class BacktestSerializer(StrictTextMixin, serializers.ModelSerializer[Backtest]):
    """A backtest as lists and its status page show it: settings, status, metrics (no trades)."""

    instrument = serializers.PrimaryKeyRelatedField(queryset=Instrument.objects.all())
    symbol = serializers.CharField(source="instrument.symbol", read_only=True)
    start = serializers.DateTimeField(required=False, allow_null=True, default=None, default_timezone=UTC)
    end = serializers.DateTimeField(required=False, allow_null=True, default=None, default_timezone=UTC)
    strategy = serializers.ChoiceField(choices=list(STRATEGIES))
    parameters = serializers.DictField(
        child=serializers.JSONField(),
        required=False,
        default=dict,
        help_text="The strategy's parameters by name (GET strategies/ lists them); missing ones take their defaults",
    )
    initial_cash = serializers.FloatField(min_value=0.01, max_value=MAX_CASH, default=10_000.0)
    fee_bps = serializers.FloatField(min_value=0, max_value=MAX_COST_BPS, default=10.0)
    slippage_bps = serializers.FloatField(min_value=0, max_value=MAX_COST_BPS, default=0.0)
    metrics = serializers.DictField(
        child=serializers.JSONField(allow_null=True),
        read_only=True,
        allow_null=True,
        help_text="Null until done; docs/backtest.md defines each",
    )
    url = serializers.SerializerMethodField(help_text="This backtest's status")
    result_url = serializers.SerializerMethodField(help_text="Its trades and equity curve, once done")

    class Meta:
        model = Backtest
        fields = [
            "id",
            "url",
            "result_url",
            "instrument",
            "symbol",
            "timeframe",
            "start",
            "end",
            "strategy",
            "parameters",
            "initial_cash",
            "fee_bps",
            "slippage_bps",
            "status",
            "error",
            "metrics",
            "bars_used",
            "first_bar_time",
            "last_bar_time",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = [
            "status",
            "error",
            "bars_used",
            "first_bar_time",
            "last_bar_time",
            "created_at",
            "started_at",
            "finished_at",
        ]

    def get_url(self, backtest: Backtest) -> str:
        return reverse("backtest-detail", kwargs={"version": "v1", "pk": backtest.pk})

    def get_result_url(self, backtest: Backtest) -> str:
        return reverse("backtest-result", kwargs={"version": "v1", "pk": backtest.pk})

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        reject_empty_span(attrs)
        strategy = get_strategy(attrs["strategy"])
        try:
            values = strategy.resolve(attrs.get("parameters") or {})
        except ParamError as error:
            raise serializers.ValidationError({"parameters": {error.param: [error.message]}}) from None
        needed = strategy.min_bars(values)
        if not services.has_enough_bars(
            attrs["instrument"].pk, attrs["timeframe"], attrs.get("start"), attrs.get("end"), needed
        ):
            raise serializers.ValidationError(
                {
                    "timeframe": [
                        f"fewer than {needed} final bars of this series in the range ({strategy.name} needs {needed})"
                    ]
                }
            )
        attrs["parameters"] = values
        return attrs

    def run_spec(self) -> services.RunSpec:
        data = self.validated_data
        return services.RunSpec(
            instrument=data["instrument"],
            timeframe=data["timeframe"],
            start=data.get("start"),
            end=data.get("end"),
            strategy=data["strategy"],
            parameters=data["parameters"],
            costs=Costs(data["initial_cash"], data["fee_bps"], data["slippage_bps"]),
        )


class BacktestListQuerySerializer(serializers.Serializer[Any]):
    status = serializers.ChoiceField(choices=Status.choices, required=False)
    instrument = serializers.IntegerField(min_value=1, max_value=MAX_ID, required=False, source="instrument_id")
    strategy = serializers.ChoiceField(choices=list(STRATEGIES), required=False)


class ResultQuerySerializer(serializers.Serializer[Any]):
    points = serializers.IntegerField(
        min_value=0,
        max_value=settings.BACKTEST_MAX_BARS,
        required=False,
        help_text="Equity points, evenly spaced, first and last kept (default BACKTEST_EQUITY_POINTS); 0: every bar",
    )

    def validate_points(self, value: int) -> int:
        if value == 1:
            raise serializers.ValidationError("0 (every bar) or at least 2: the first and the last bar")
        return value


# A serializer for the schema only (results are rendered from stored records); inline because one
# field is called `return`, which a class body cannot declare.
TRADE = inline_serializer(
    "BacktestTrade",
    {
        "entry_time": serializers.IntegerField(
            help_text="Open time (UTC epoch seconds) of the bar whose open filled the entry"
        ),
        "exit_time": serializers.IntegerField(
            help_text="Open time of the bar whose open filled the exit; for a trade closed at the end, the last bar's"
        ),
        "entry_price": serializers.FloatField(help_text="Fill price, slippage included"),
        "exit_price": serializers.FloatField(help_text="Fill price, slippage included"),
        "quantity": serializers.FloatField(),
        "pnl": serializers.FloatField(help_text="Cash after the exit minus cash before the entry, fees included"),
        "return": serializers.FloatField(help_text="pnl over the cash before the entry"),
        "fees": serializers.FloatField(help_text="Both sides' fees"),
        "bars_held": serializers.IntegerField(help_text="Bars held through: the entry bar counted, the exit bar not"),
        "closed_at_end": serializers.BooleanField(help_text="Still open after the last bar: closed at its close"),
    },
    many=True,
)


class EquitySerializer(serializers.Serializer[Any]):
    time = serializers.ListField(child=serializers.IntegerField(), help_text="Bar open times, UTC epoch seconds")
    equity = serializers.ListField(child=serializers.FloatField(), help_text="Equity at each bar's close")
    points = serializers.IntegerField(help_text="Points returned")
    bars = serializers.IntegerField(help_text="Points of the full curve (one per bar)")


class BacktestResultSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    metrics = serializers.DictField(child=serializers.JSONField(allow_null=True))
    trades = TRADE
    equity = EquitySerializer()

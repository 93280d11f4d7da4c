"""Backtests of the user's own: create (queued), list, status, result, delete; and the strategies."""

from __future__ import annotations

from typing import Any, cast

from django.conf import settings
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from accounts.permissions import CanOwnBacktests, IsOwner, OwnedObjectsMixin
from backtest import services
from backtest.api.serializers import (
    BacktestListQuerySerializer,
    BacktestResultSerializer,
    BacktestSerializer,
    ResultQuerySerializer,
)
from backtest.engine import downsample
from backtest.models import Backtest, BacktestResult, Status
from backtest.strategies import catalogue_payload
from cryptostock.api_schema import ErrorSerializer
from market.api.views import query_data


class ResultNotReady(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "not_ready"
    default_detail = "the backtest has no result yet"


STRATEGY_PARAM = inline_serializer(
    "BacktestStrategyParam",
    {
        "name": serializers.CharField(),
        "type": serializers.ChoiceField(choices=["int", "float", "choice"]),
        "default": serializers.JSONField(),
        "min": serializers.FloatField(required=False, allow_null=True),
        "max": serializers.FloatField(required=False, allow_null=True),
        "choices": serializers.ListField(child=serializers.CharField(), required=False),
        "description": serializers.CharField(),
    },
)
STRATEGY = inline_serializer(
    "BacktestStrategy",
    {
        "name": serializers.CharField(),
        "title": serializers.CharField(),
        "description": serializers.CharField(),
        "params": serializers.ListField(child=STRATEGY_PARAM),
    },
    many=True,
)


class BacktestViewSet(
    OwnedObjectsMixin[Backtest],
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet[Backtest],
):
    """The user's backtests, newest first. Creating one queues it: poll its `url` until `status` is
    `done` (or `failed`, with `error`), then read `result_url`."""

    permission_classes = [CanOwnBacktests, IsOwner]
    queryset = Backtest.objects.select_related("instrument")
    serializer_class = BacktestSerializer
    lookup_value_regex = r"\d+"

    @extend_schema(parameters=[BacktestListQuerySerializer])
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[Backtest]:
        queryset = super().get_queryset()
        if self.action != "list":
            return queryset
        query = BacktestListQuerySerializer(data=query_data(self.request))
        query.is_valid(raise_exception=True)
        return queryset.filter(**query.validated_data)

    def perform_create(self, serializer: BaseSerializer[Backtest]) -> None:
        spec = cast(BacktestSerializer, serializer).run_spec()
        serializer.instance = services.create_backtest(cast(int, self.request.user.pk), spec)

    def perform_destroy(self, instance: Backtest) -> None:
        services.delete_backtest(instance)

    @extend_schema(
        parameters=[ResultQuerySerializer],
        responses={
            200: BacktestResultSerializer,
            409: OpenApiResponse(ErrorSerializer, description="Not done yet (pending or running), or failed"),
        },
    )
    @action(detail=True, methods=["get"])
    def result(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Metrics, every trade and the equity curve (`?points=0` for one point per bar)."""
        backtest = self.get_object()
        query = ResultQuerySerializer(data=query_data(request))
        query.is_valid(raise_exception=True)
        if backtest.status != Status.DONE:
            raise ResultNotReady(_not_ready_message(backtest))
        stored = BacktestResult.objects.get(pk=backtest.pk)
        time, equity = stored.equity_curve()
        points = query.validated_data.get("points", settings.BACKTEST_EQUITY_POINTS)
        if points:
            time, equity = downsample(time, equity, points)
        curve = {"time": time.tolist(), "equity": equity.tolist(), "points": len(equity), "bars": backtest.bars_used}
        return Response({"id": backtest.pk, "metrics": backtest.metrics, "trades": stored.trades, "equity": curve})

    @extend_schema(responses=STRATEGY)
    @action(detail=False, methods=["get"], pagination_class=None)
    def strategies(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Every strategy with its parameters: type, default, bounds."""
        return Response(catalogue_payload())


def _not_ready_message(backtest: Backtest) -> str:
    if backtest.status == Status.FAILED:
        return f"the backtest failed: {backtest.error}"
    return f"the backtest is {backtest.status}; poll its status until it is done"

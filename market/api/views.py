from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from market.api.serializers import BarsQuerySerializer, ExchangeSerializer, InstrumentSerializer
from market.models import Exchange, Instrument
from market.queries import bars_payload


class ExchangeViewSet(viewsets.ReadOnlyModelViewSet[Exchange]):
    queryset = Exchange.objects.all()
    serializer_class = ExchangeSerializer


class InstrumentViewSet(viewsets.ReadOnlyModelViewSet[Instrument]):
    serializer_class = InstrumentSerializer

    @extend_schema(
        parameters=[
            OpenApiParameter("search", str, description="Part of the symbol or name"),
            OpenApiParameter("exchange", str, description="Exchange code, e.g. binance"),
            OpenApiParameter("active", bool),
        ]
    )
    def list(self, request: Request, *args: object, **kwargs: object) -> Response:
        return super().list(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[Instrument]:
        queryset = Instrument.objects.select_related("exchange")
        params = self.request.query_params
        if search := params.get("search"):
            queryset = queryset.search(search)
        if exchange := params.get("exchange"):
            queryset = queryset.filter(exchange__code=exchange)
        if (active := params.get("active")) is not None:
            queryset = queryset.filter(active=active.lower() in ("1", "true", "yes"))
        return queryset


BAR_SCHEMA = inline_serializer(
    "Bar",
    {
        "time": serializers.IntegerField(help_text="Open time, UTC epoch seconds"),
        "open": serializers.FloatField(),
        "high": serializers.FloatField(),
        "low": serializers.FloatField(),
        "close": serializers.FloatField(),
        "volume": serializers.FloatField(),
        "trades": serializers.IntegerField(allow_null=True),
        "vwap": serializers.FloatField(allow_null=True),
        "final": serializers.BooleanField(),
    },
)


class BarsView(APIView):
    """OHLCV bars of one instrument and timeframe."""

    @extend_schema(
        parameters=[BarsQuerySerializer],
        responses=inline_serializer(
            "BarsResponse",
            {
                "instrument": serializers.IntegerField(),
                "timeframe": serializers.CharField(),
                "bars": BAR_SCHEMA.__class__(many=True),
            },
        ),
    )
    def get(self, request: Request, version: str) -> Response:
        query = BarsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        bars = bars_payload(
            params["instrument"],
            params["timeframe"],
            start=params.get("start"),
            end=params.get("end"),
            limit=params["limit"],
            newest_first=params["order"] == "desc",
        )
        return Response({"instrument": params["instrument"], "timeframe": params["timeframe"], "bars": bars})

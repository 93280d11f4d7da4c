"""Market data over the API: exchanges and instruments (admins change them), bars, latest prices."""

from __future__ import annotations

from typing import Any

from django.db.models import Model, QuerySet
from django.http import HttpResponse
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from market.api.bars import render_bars
from market.api.permissions import MarketDataAccess
from market.api.serializers import (
    BarsQuerySerializer,
    ExchangeSerializer,
    InstrumentFilterSerializer,
    InstrumentSerializer,
    SnapshotQuerySerializer,
    TimeframeQuerySerializer,
    plain_bars_query,
)
from market.bars_cache import cached_body, store_body
from market.models import Exchange, Instrument
from market.queries import bars_payload


def query_data(request: Request) -> dict[str, str]:
    """The query string for a serializer, as a plain dict: given a QueryDict, DRF would take an empty
    `?timeframe=` for "not given" (HTML form rules) instead of refusing it like any bad value."""
    return request.query_params.dict()


def validated_query(serializer_class: type[serializers.Serializer[Any]], request: Request) -> dict[str, Any]:
    """The request's query string checked by `serializer_class` (a bad value is a 400 naming it)."""
    query = serializer_class(data=query_data(request))
    query.is_valid(raise_exception=True)
    return dict(query.validated_data)


class MarketViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet[Any],
):
    """Read for viewers, create/update/deactivate for admins; never delete (bars would go with it)."""

    permission_classes = [MarketDataAccess]

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def deactivate(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Mark inactive: collectors stop streaming it; its data stays readable."""
        obj: Model = self.get_object()
        obj.active = False  # type: ignore[attr-defined]
        obj.save()
        return Response(self.get_serializer(obj).data)


class ExchangeViewSet(MarketViewSet):
    queryset = Exchange.objects.all()
    serializer_class = ExchangeSerializer


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

LATEST_SCHEMA = inline_serializer(
    "Latest",
    {
        "instrument": serializers.IntegerField(),
        "symbol": serializers.CharField(),
        "exchange": serializers.CharField(),
        "timeframe": serializers.CharField(),
        "bar": BAR_SCHEMA.__class__(allow_null=True, help_text="The newest stored bar; null if none"),
        "price": serializers.FloatField(allow_null=True, help_text="Close of that bar; null if none"),
    },
)


def latest_payload(instrument: Instrument, timeframe: str) -> dict[str, Any]:
    newest = bars_payload(instrument.pk, timeframe, limit=1, newest_first=True)
    bar = newest[0] if newest else None
    return {
        "instrument": instrument.pk,
        "symbol": instrument.symbol,
        "exchange": instrument.exchange.code,
        "timeframe": timeframe,
        "bar": bar,
        "price": bar["close"] if bar else None,
    }


class InstrumentViewSet(MarketViewSet):
    serializer_class = InstrumentSerializer

    @extend_schema(parameters=[InstrumentFilterSerializer])
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[Instrument]:
        queryset = Instrument.objects.select_related("exchange")
        if self.action != "list":
            return queryset
        query = InstrumentFilterSerializer(data=query_data(self.request))
        query.is_valid(raise_exception=True)
        params = query.validated_data
        if search := params.get("search"):
            queryset = queryset.search(search)
        if exchange := params.get("exchange"):
            queryset = queryset.filter(exchange__code=exchange)
        if asset_class := params.get("asset_class"):
            queryset = queryset.filter(asset_class=asset_class)
        if "active" in params:
            queryset = queryset.filter(active=params["active"])
        return queryset

    @extend_schema(parameters=[TimeframeQuerySerializer], responses=LATEST_SCHEMA, summary="Latest bar and price")
    @action(detail=True, methods=["get"])
    def latest(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """The newest stored bar of the timeframe and its close as the latest price (final bars are
        stored as their period ends, so this lags the live WebSocket feed by up to one bar)."""
        query = TimeframeQuerySerializer(data=query_data(request))
        query.is_valid(raise_exception=True)
        return Response(latest_payload(self.get_object(), query.validated_data["timeframe"]))


class SnapshotView(APIView):
    """The latest bar and price of several instruments at once, in the order asked."""

    permission_classes = [MarketDataAccess]

    @extend_schema(
        parameters=[SnapshotQuerySerializer],
        responses=inline_serializer(
            "Snapshot",
            {"timeframe": serializers.CharField(), "instruments": LATEST_SCHEMA.__class__(many=True)},
        ),
    )
    def get(self, request: Request, version: str) -> Response:
        query = SnapshotQuerySerializer(data=query_data(request))
        query.is_valid(raise_exception=True)
        ids, timeframe = query.validated_data["instruments"], query.validated_data["timeframe"]
        found = Instrument.objects.select_related("exchange").in_bulk(ids)
        if missing := [str(pk) for pk in ids if pk not in found]:
            raise serializers.ValidationError({"instruments": [f"no instruments with ids {', '.join(missing[:5])}"]})
        return Response({"timeframe": timeframe, "instruments": [latest_payload(found[pk], timeframe) for pk in ids]})


class BarsView(APIView):
    """OHLCV bars of one instrument and timeframe."""

    permission_classes = [MarketDataAccess]

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
    def get(self, request: Request, version: str) -> HttpResponse:
        raw = query_data(request)
        # A body cached for this very query string was stored only after the checks below passed.
        body, slot = cached_body(raw)
        if body is not None:
            return HttpResponse(body, content_type="application/json")
        params = plain_bars_query(raw)
        if params is None:
            query = BarsQuerySerializer(data=raw)
            query.is_valid(raise_exception=True)
            params = query.validated_data
        # The body is rendered here, once, by orjson; DRF passes it through.
        body = render_bars(params["instrument"], params["timeframe"], params)
        if body is None:
            raise serializers.ValidationError({"instrument": [f"no instrument with id {params['instrument']}"]})
        if slot is not None:
            store_body(slot, body)
        return HttpResponse(body, content_type="application/json")

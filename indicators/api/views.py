"""Indicators and ML features over the API: the catalogues, and series of one instrument."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cryptostock.api_json import ORJSONRenderer
from indicators.api.serializers import FeaturesQuerySerializer, IndicatorsQuerySerializer
from indicators.catalogue import catalogue_payload
from indicators.features import FEATURES, parquet_bytes
from indicators.history import feature_history, indicator_history
from indicators.series import nullable
from market.api.permissions import MarketDataAccess
from market.models import Instrument

PARQUET = "application/vnd.apache.parquet"


class FormatNamingNegotiation(DefaultContentNegotiation):
    """An unknown `?format=` is a bad parameter (400 naming it), not a missing page (DRF's 404)."""

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> Any:
        renderers = list(renderers)
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except Http404:
            known = ", ".join(str(renderer.format) for renderer in renderers)
            asked = format_suffix or request.query_params.get(self.settings.URL_FORMAT_OVERRIDE or "format")
            raise ValidationError({"format": [f"unknown format {asked!r}; use one of {known}"]}) from None


class ParquetRenderer(BaseRenderer):
    """Lets `?format=parquet` (or Accept: application/vnd.apache.parquet) select Parquet output."""

    media_type = PARQUET
    format = "parquet"
    charset = None

    def render(
        self, data: Any, accepted_media_type: str | None = None, renderer_context: Mapping[str, Any] | None = None
    ) -> bytes:
        return data if isinstance(data, bytes) else b""


# Response shapes for the OpenAPI schema (the views build plain dicts for speed, not serializers).
# (functions, not shared instances: a DRF field can be bound to one parent only)


def nullable_floats() -> serializers.ListField:
    return serializers.ListField(child=serializers.FloatField(allow_null=True))


def series_times() -> serializers.ListField:
    return serializers.ListField(child=serializers.IntegerField(), help_text="Bar open times, UTC epoch seconds")


CATALOGUE_RESPONSE = inline_serializer(
    "IndicatorCatalogue", {"indicators": serializers.ListField(child=serializers.DictField())}
)
FEATURE_CATALOGUE_RESPONSE = inline_serializer(
    "FeatureCatalogue",
    {
        "features": inline_serializer(
            "Feature",
            {
                "name": serializers.CharField(),
                "group": serializers.CharField(),
                "description": serializers.CharField(),
                "formula": serializers.CharField(),
            },
            many=True,
        )
    },
)
INDICATORS_RESPONSE = inline_serializer(
    "InstrumentIndicators",
    {
        "instrument": serializers.IntegerField(),
        "timeframe": serializers.CharField(),
        "time": series_times(),
        "indicators": serializers.DictField(
            child=inline_serializer(
                "IndicatorSeries",
                {
                    "name": serializers.CharField(),
                    "params": serializers.DictField(),
                    "placement": serializers.CharField(),
                    "warmup": serializers.IntegerField(),
                    "outputs": serializers.DictField(child=nullable_floats()),
                },
            )
        ),
    },
)
FEATURES_RESPONSE = inline_serializer(
    "InstrumentFeatures",
    {
        "instrument": serializers.IntegerField(),
        "timeframe": serializers.CharField(),
        "time": series_times(),
        "features": serializers.DictField(child=nullable_floats()),
    },
)


class IndicatorCatalogueView(APIView):
    """Every indicator: parameters with defaults and bounds, outputs, warm-up, overlay or pane."""

    permission_classes = [MarketDataAccess]

    @extend_schema(responses=CATALOGUE_RESPONSE)
    def get(self, request: Request, version: str) -> Response:
        return Response({"indicators": catalogue_payload()})


class FeatureCatalogueView(APIView):
    """Every ML feature: name, group, description and formula."""

    permission_classes = [MarketDataAccess]

    @extend_schema(responses=FEATURE_CATALOGUE_RESPONSE)
    def get(self, request: Request, version: str) -> Response:
        features = [
            {"name": f.name, "group": f.group, "description": f.description, "formula": f.formula} for f in FEATURES
        ]
        return Response({"features": features})


class InstrumentIndicatorsView(APIView):
    """Indicator series of one instrument, each value computed with its warm-up history before `start`.

    `names`: rsi,macd,ema@fast,ema@slow (a label after @ repeats an indicator);
    `params`: key.param=value pairs, e.g. ema@fast.length=20,rsi.length=21.
    """

    permission_classes = [MarketDataAccess]
    content_negotiation_class = FormatNamingNegotiation

    @extend_schema(parameters=[IndicatorsQuerySerializer], responses=INDICATORS_RESPONSE)
    def get(self, request: Request, version: str, instrument_id: int) -> Response:
        instrument = get_object_or_404(Instrument.objects.select_related("exchange"), pk=instrument_id)
        query = IndicatorsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        history = indicator_history(
            instrument,
            params["timeframe"],
            params["specs"],
            start=params.get("start"),
            end=params.get("end"),
            limit=params["limit"],
        )
        indicators = {}
        for spec in params["specs"]:
            definition = spec.definition
            series = history.series[spec.key]
            indicators[spec.key] = {
                "name": spec.name,
                "params": spec.values,
                "placement": definition.placement,
                "warmup": spec.lookback,
                "outputs": {
                    out.name: nullable(series.outputs.get(out.name, np.empty(0))) for out in definition.outputs
                },
            }
        body = {
            "instrument": instrument.pk,
            "timeframe": params["timeframe"],
            "time": history.time.tolist(),
            "indicators": indicators,
        }
        return Response(body)


class InstrumentFeaturesView(APIView):
    """ML features of one instrument as columns (JSON), or a Parquet file with `format=parquet`."""

    permission_classes = [MarketDataAccess]
    renderer_classes = [ORJSONRenderer, ParquetRenderer]
    content_negotiation_class = FormatNamingNegotiation

    @extend_schema(
        parameters=[FeaturesQuerySerializer, OpenApiParameter("format", str, enum=["json", "parquet"])],
        responses=FEATURES_RESPONSE,
    )
    def get(
        self, request: Request, version: str, instrument_id: int, format: str | None = None
    ) -> Response | HttpResponse:
        instrument = get_object_or_404(Instrument.objects.select_related("exchange"), pk=instrument_id)
        query = FeaturesQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        frame = feature_history(
            instrument,
            params["timeframe"],
            start=params.get("start"),
            end=params.get("end"),
            limit=params["limit"],
            names=params.get("names"),
        )
        if request.accepted_renderer.format == "parquet":
            return self._parquet(instrument, params["timeframe"], frame)
        times = (pd.DatetimeIndex(frame.index).as_unit("s").asi8).tolist()
        features = {name: nullable(frame[name].to_numpy()) for name in frame.columns}
        return Response(
            {"instrument": instrument.pk, "timeframe": params["timeframe"], "time": times, "features": features}
        )

    def _parquet(self, instrument: Instrument, timeframe: str, frame: pd.DataFrame) -> HttpResponse:
        body = parquet_bytes(
            frame, instrument=instrument.symbol, exchange=instrument.exchange.code, timeframe=timeframe
        )
        response = HttpResponse(body, content_type=PARQUET)
        filename = f"{instrument.symbol.replace('/', '-')}_{timeframe}_features.parquet"
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response

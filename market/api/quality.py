"""GET /api/v1/quality/: data-quality reports (score 0..100 per instrument, timeframe and day) with findings."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers
from rest_framework.request import Request
from rest_framework.response import Response

from market.api.permissions import MarketDataAccess
from market.api.serializers import MAX_ID
from market.api.views import query_data
from market.models import QualityFinding, QualityReport
from market.timeframes import TIMEFRAMES


class QualityQuerySerializer(serializers.Serializer[Any]):
    """The filters of the quality list; a bad one is a 400 that names it."""

    instrument = serializers.IntegerField(min_value=1, max_value=MAX_ID, required=False)
    timeframe = serializers.ChoiceField(choices=list(TIMEFRAMES), required=False)
    day = serializers.DateField(required=False)
    start = serializers.DateField(required=False, help_text="First day (inclusive)")
    end = serializers.DateField(required=False, help_text="Last day (inclusive)")
    max_score = serializers.IntegerField(min_value=0, max_value=100, required=False, help_text="Only scores <= this")


class QualityFindingSerializer(serializers.ModelSerializer[QualityFinding]):
    class Meta:
        model = QualityFinding
        fields = ["kind", "time", "count", "penalty", "detail"]
        read_only_fields = fields


class QualityReportSerializer(serializers.ModelSerializer[QualityReport]):
    symbol = serializers.CharField(source="instrument.symbol", read_only=True)
    exchange = serializers.CharField(source="instrument.exchange.code", read_only=True)
    findings = QualityFindingSerializer(many=True, read_only=True)

    class Meta:
        model = QualityReport
        fields = [
            "id",
            "instrument",
            "symbol",
            "exchange",
            "timeframe",
            "day",
            "score",
            "bars",
            "expected_bars",
            "updated_at",
            "findings",
        ]
        read_only_fields = fields


class QualityReportListView(generics.ListAPIView[QualityReport]):
    """Quality reports, newest day first; filter by instrument, timeframe, day or days, and score."""

    permission_classes = [MarketDataAccess]
    serializer_class = QualityReportSerializer

    @extend_schema(parameters=[QualityQuerySerializer])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[QualityReport]:
        query = QualityQuerySerializer(data=query_data(self.request))
        query.is_valid(raise_exception=True)
        params = query.validated_data
        reports = QualityReport.objects.select_related("instrument__exchange").prefetch_related("findings")
        filters = {
            "instrument_id": params.get("instrument"),
            "timeframe": params.get("timeframe"),
            "day": params.get("day"),
            "day__gte": params.get("start"),
            "day__lte": params.get("end"),
            "score__lte": params.get("max_score"),
        }
        return reports.filter(**{name: value for name, value in filters.items() if value is not None})

"""Shapes and validation of exports. The streamed export takes the bars endpoint's parameters, checked
by the bars endpoint's own serializer, so the same bad value gets the same 400 message."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from rest_framework import serializers

from cryptostock.api_fields import StrictTextMixin
from exports.models import Export
from exports.writers import FORMATS
from market.api.serializers import MAX_ID, BarsQuerySerializer, reject_empty_span
from market.models import Instrument
from market.timeframes import TIMEFRAMES

FORMAT_HELP = "csv, json (JSON Lines: one object per line) or parquet"


class ExportQuerySerializer(BarsQuerySerializer):
    """The bars endpoint's query (instrument, timeframe, start, end) plus the file format; no limit
    or order: an export is the whole range, oldest first."""

    limit = None  # type: ignore[assignment]
    order = None  # type: ignore[assignment]
    format = serializers.ChoiceField(choices=list(FORMATS), default="csv", help_text=FORMAT_HELP)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        attrs.pop("limit", None)
        return attrs


class ExportSerializer(StrictTextMixin, serializers.ModelSerializer[Export]):
    """A background export: what was asked (instrument, timeframe, start, end, format) and where it
    stands. Create one with the first five; the rest is the server's."""

    instrument = serializers.IntegerField(source="instrument_id", min_value=1, max_value=MAX_ID)
    symbol = serializers.CharField(source="instrument.symbol", read_only=True)
    exchange = serializers.CharField(source="instrument.exchange.code", read_only=True)
    timeframe = serializers.ChoiceField(choices=list(TIMEFRAMES), default="1m")
    start = serializers.DateTimeField(required=False, allow_null=True, default=None, default_timezone=UTC)
    end = serializers.DateTimeField(required=False, allow_null=True, default=None, default_timezone=UTC)
    format = serializers.ChoiceField(choices=list(FORMATS), default="csv", help_text=FORMAT_HELP)
    download = serializers.SerializerMethodField(help_text="Where to download the file once status is done")

    class Meta:
        model = Export
        fields = [
            "id",
            "instrument",
            "symbol",
            "exchange",
            "timeframe",
            "start",
            "end",
            "format",
            "status",
            "rows",
            "bytes",
            "error",
            "created_at",
            "started_at",
            "finished_at",
            "expires_at",
            "download",
        ]
        read_only_fields = [
            "status",
            "rows",
            "bytes",
            "error",
            "created_at",
            "started_at",
            "finished_at",
            "expires_at",
        ]

    def get_download(self, export: Export) -> str | None:
        if export.status != "done":
            return None
        return f"/api/v1/exports/{export.pk}/download/"

    def validate_instrument(self, value: int) -> int:
        if not Instrument.objects.filter(pk=value).exists():
            raise serializers.ValidationError(f"no instrument with id {value}")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        reject_empty_span(attrs)
        return attrs

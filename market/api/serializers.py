from __future__ import annotations

from datetime import UTC
from typing import Any

from django.conf import settings
from rest_framework import serializers

from market.models import Exchange, Instrument
from market.timeframes import TIMEFRAMES


class ExchangeSerializer(serializers.ModelSerializer[Exchange]):
    class Meta:
        model = Exchange
        fields = ["id", "code", "name", "asset_classes", "timezone", "active"]


class InstrumentSerializer(serializers.ModelSerializer[Instrument]):
    exchange: serializers.SlugRelatedField[Exchange] = serializers.SlugRelatedField(slug_field="code", read_only=True)

    class Meta:
        model = Instrument
        fields = ["id", "exchange", "symbol", "name", "asset_class", "base", "quote", "active"]


class BarsQuerySerializer(serializers.Serializer[Any]):
    """Validates the query string of the bars endpoint; names the bad parameter on error."""

    instrument = serializers.IntegerField(min_value=1)
    timeframe = serializers.ChoiceField(choices=list(TIMEFRAMES), default="1m")
    start = serializers.DateTimeField(required=False, default_timezone=UTC)
    end = serializers.DateTimeField(required=False, default_timezone=UTC)
    limit = serializers.IntegerField(min_value=1, required=False)
    order = serializers.ChoiceField(choices=["asc", "desc"], default="asc")

    def validate_limit(self, value: int) -> int:
        if value > settings.API_MAX_BARS:
            raise serializers.ValidationError(f"at most {settings.API_MAX_BARS} bars per request")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        start, end = attrs.get("start"), attrs.get("end")
        if start is not None and end is not None and start >= end:
            raise serializers.ValidationError({"end": "end must be after start"})
        if not Instrument.objects.filter(pk=attrs["instrument"]).exists():
            raise serializers.ValidationError({"instrument": f"no instrument with id {attrs['instrument']}"})
        attrs.setdefault("limit", min(1000, settings.API_MAX_BARS))
        return attrs

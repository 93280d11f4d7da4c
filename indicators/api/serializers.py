"""Query-string validation for the indicator and feature endpoints; errors name the bad parameter."""

from __future__ import annotations

import re
from datetime import UTC
from typing import Any

from django.conf import settings
from rest_framework import serializers

from indicators.catalogue import CATALOGUE, IndicatorSpec, ParamError
from indicators.features import FEATURES_BY_NAME
from market.api.serializers import reject_empty_span
from market.timeframes import TIMEFRAMES

KEY = re.compile(r"^(?P<name>[a-z]+)(@(?P<label>[A-Za-z0-9_-]{1,32}))?$")
MAX_INDICATORS = 20
DEFAULT_LIMIT = 1000


def parse_names(text: str) -> list[tuple[str, str]]:
    """`rsi,ema@fast,ema@slow` -> [(key, indicator name)]; a label after @ allows the same one twice."""
    keys = [part.strip() for part in text.split(",") if part.strip()]
    if not keys:
        raise serializers.ValidationError("name at least one indicator, e.g. names=rsi,macd")
    if len(keys) > MAX_INDICATORS:
        raise serializers.ValidationError(f"at most {MAX_INDICATORS} indicators per request")
    parsed = []
    for key in keys:
        match = KEY.match(key)
        if match is None or match["name"] not in CATALOGUE:
            raise serializers.ValidationError(f"unknown indicator {key!r}; use one of {', '.join(CATALOGUE)}")
        parsed.append((key, match["name"]))
    duplicates = sorted({key for key, _ in parsed if [k for k, _ in parsed].count(key) > 1})
    if duplicates:
        raise serializers.ValidationError(f"{duplicates[0]} is named twice; label repeats, e.g. ema@fast,ema@slow")
    return parsed


PARAM = re.compile(r"^(?P<key>[^.=:]+)\.(?P<param>[A-Za-z_]+)[=:](?P<value>.+)$")


def parse_params(text: str, keys: set[str]) -> dict[str, dict[str, str]]:
    """`rsi.length=21,macd.fast:8` -> {"rsi": {"length": "21"}, "macd": {"fast": "8"}}."""
    params: dict[str, dict[str, str]] = {}
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        match = PARAM.match(entry)
        if match is None:
            raise serializers.ValidationError(f"{entry!r} is not indicator.parameter=value (e.g. rsi.length=21)")
        if match["key"] not in keys:
            raise serializers.ValidationError(f"{entry!r} is for {match['key']!r}, which is not in names")
        params.setdefault(match["key"], {})[match["param"]] = match["value"].strip()
    return params


class RangeQuerySerializer(serializers.Serializer[Any]):
    timeframe = serializers.ChoiceField(choices=list(TIMEFRAMES), default="1m")
    start = serializers.DateTimeField(required=False, default_timezone=UTC)
    end = serializers.DateTimeField(required=False, default_timezone=UTC)
    limit = serializers.IntegerField(min_value=1, required=False)

    def validate_limit(self, value: int) -> int:
        if value > settings.API_MAX_BARS:
            raise serializers.ValidationError(f"at most {settings.API_MAX_BARS} bars per request")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        reject_empty_span(attrs)
        attrs.setdefault("limit", min(DEFAULT_LIMIT, settings.API_MAX_BARS))
        return attrs


class IndicatorsQuerySerializer(RangeQuerySerializer):
    names = serializers.CharField(help_text="Comma separated: rsi,macd,ema@fast,ema@slow")
    params = serializers.CharField(
        required=False, default="", allow_blank=True, help_text="Comma separated key.param=value: rsi.length=21"
    )

    def validate_names(self, value: str) -> list[tuple[str, str]]:
        return parse_names(value)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        names: list[tuple[str, str]] = attrs["names"]
        try:
            raw = parse_params(attrs["params"], {key for key, _ in names})
        except serializers.ValidationError as error:
            raise serializers.ValidationError({"params": error.detail}) from None
        specs = []
        for key, name in names:
            try:
                specs.append(IndicatorSpec.build(name, raw.get(key, {}), key=key))
            except ParamError as error:
                raise serializers.ValidationError({"params": f"{key}.{error.param}: {error.message}"}) from None
        attrs["specs"] = specs
        return attrs


class FeaturesQuerySerializer(RangeQuerySerializer):
    names = serializers.CharField(required=False, help_text="Comma separated subset of the features (default: all)")

    def validate_names(self, value: str) -> list[str]:
        names = [name.strip() for name in value.split(",") if name.strip()]
        unknown = [name for name in names if name not in FEATURES_BY_NAME]
        if unknown or not names:
            raise serializers.ValidationError(
                f"unknown feature {unknown[0] if unknown else value!r}; see /api/v1/features/"
            )
        return names

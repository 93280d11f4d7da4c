from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.validators import RegexValidator
from rest_framework import serializers

from cryptostock.api_fields import StrictTextMixin
from market.models import AssetClass, Exchange, Instrument
from market.timeframes import TIMEFRAMES

# Ids beyond a signed 64-bit integer cannot exist; refusing them early keeps the database from
# being asked about them (SQLite raises OverflowError on such a parameter).
MAX_ID = 2**63 - 1
# Instruments one snapshot request may ask for.
MAX_SNAPSHOT_INSTRUMENTS = 100


class ExchangeSerializer(StrictTextMixin, serializers.ModelSerializer[Exchange]):
    class Meta:
        model = Exchange
        fields = ["id", "code", "name", "asset_classes", "timezone", "active"]

    def validate_timezone(self, value: str) -> str:
        try:
            ZoneInfo(value)
        except (KeyError, ValueError, OSError):  # unknown zone, malformed key, unreadable name
            raise serializers.ValidationError(
                f"{value!r} is not an IANA time zone such as UTC or America/New_York"
            ) from None
        return value


class InstrumentSerializer(StrictTextMixin, serializers.ModelSerializer[Instrument]):
    exchange: serializers.SlugRelatedField[Exchange] = serializers.SlugRelatedField(
        slug_field="code", queryset=Exchange.objects.all(), help_text="Exchange code, e.g. binance"
    )

    class Meta:
        model = Instrument
        fields = ["id", "exchange", "symbol", "name", "asset_class", "base", "quote", "active"]


class InstrumentFilterSerializer(serializers.Serializer[Any]):
    """The query string of the instrument list."""

    # Blank values mean "no filter", as an empty search box does.
    search = serializers.CharField(
        required=False, allow_blank=True, max_length=100, help_text="Part of the symbol or name"
    )
    exchange = serializers.CharField(
        required=False, allow_blank=True, max_length=32, help_text="Exchange code, e.g. binance"
    )
    asset_class = serializers.ChoiceField(choices=AssetClass.choices, required=False, allow_blank=True)
    active = serializers.BooleanField(required=False, help_text="true or false; absent: both")


def reject_empty_span(attrs: dict[str, Any], first: str = "start", last: str = "end") -> None:
    """A 400 on `last` unless `first` comes before it (either may be absent): every query of a span
    (bars, features, exports, backtests, backfills, the audit trail's `since`/`until`) refuses an
    empty or reversed one alike."""
    start, end = attrs.get(first), attrs.get(last)
    if start is not None and end is not None and start >= end:
        raise serializers.ValidationError({last: f"{last} must be after {first}"})


class BarsQuerySerializer(serializers.Serializer[Any]):
    """Validates the query string of the bars endpoint; names the bad parameter on error."""

    instrument = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    timeframe = serializers.ChoiceField(choices=list(TIMEFRAMES), default="1m")
    start = serializers.DateTimeField(required=False, default_timezone=UTC)
    end = serializers.DateTimeField(required=False, default_timezone=UTC)
    limit = serializers.IntegerField(
        min_value=1,
        max_value=settings.API_MAX_BARS,
        required=False,
        error_messages={"max_value": "at most {max_value} bars per request"},
        help_text="Default 1000",
    )
    order = serializers.ChoiceField(choices=["asc", "desc"], default="asc")

    def validate_limit(self, value: int) -> int:
        if value > settings.API_MAX_BARS:
            raise serializers.ValidationError(f"at most {settings.API_MAX_BARS} bars per request")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        reject_empty_span(attrs)
        # Whether the instrument exists is the view's question: a cached response answers it.
        attrs.setdefault("limit", default_bars())
        return attrs


def default_bars() -> int:
    """Bars a request gets without a limit."""
    return min(1000, settings.API_MAX_BARS)


def plain_bars_query(query: Mapping[str, str]) -> dict[str, Any] | None:
    """What `BarsQuerySerializer` makes of the usual bars query, worked out without building one.

    A chart asks for instrument, timeframe and limit (digits, a known timeframe) and perhaps order,
    on every load; a serializer deep-copies its six fields before validating them (7% of the request
    thread's time in an uncached bars request, sampled with py-spy). Only that plain form is taken
    here, and it gives exactly the serializer's validated data (test_api_market checks that the two
    agree on generated queries); anything else (a
    start or end, a sign, spaces, a value out of range) gives None and goes through the serializer,
    which accepts it or refuses it with its own message.
    """
    if "start" in query or "end" in query:
        return None
    instrument = _plain_positive_int(query.get("instrument"), MAX_ID)
    limit_text = query.get("limit")
    limit = default_bars() if limit_text is None else _plain_positive_int(limit_text, settings.API_MAX_BARS)
    timeframe, order = query.get("timeframe", "1m"), query.get("order", "asc")
    if instrument is None or limit is None or timeframe not in TIMEFRAMES or order not in ("asc", "desc"):
        return None
    return {"instrument": instrument, "timeframe": timeframe, "limit": limit, "order": order}


def _plain_positive_int(text: str | None, maximum: int) -> int | None:
    if text is None or not (text.isascii() and text.isdigit()) or len(text) > 19:
        return None
    value = int(text)
    return value if 1 <= value <= maximum else None


class TimeframeQuerySerializer(serializers.Serializer[Any]):
    timeframe = serializers.ChoiceField(choices=list(TIMEFRAMES), default="1m")


class SnapshotQuerySerializer(TimeframeQuerySerializer):
    instruments = serializers.CharField(
        max_length=2000,
        help_text=f"Comma separated instrument ids, at most {MAX_SNAPSHOT_INSTRUMENTS}",
        validators=[RegexValidator(r"^ *[1-9][0-9]{0,18}( *, *[1-9][0-9]{0,18})* *$", "not a list of instrument ids")],
    )

    def validate_instruments(self, value: str) -> list[int]:
        parts = [part.strip() for part in value.split(",") if part.strip()]
        if not parts:
            raise serializers.ValidationError("give at least one instrument id")
        bad = [part for part in parts if not part.isascii() or not part.isdigit() or not 0 < int(part) <= MAX_ID]
        if bad:
            raise serializers.ValidationError(f"not instrument ids: {', '.join(bad[:5])}")
        ids = list(dict.fromkeys(int(part) for part in parts))
        if len(ids) > MAX_SNAPSHOT_INSTRUMENTS:
            raise serializers.ValidationError(f"at most {MAX_SNAPSHOT_INSTRUMENTS} instruments per request")
        return ids

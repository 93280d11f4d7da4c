"""GET /api/v1/arbitrage/opportunities/: cross-exchange opportunities, open and past (docs/arbitrage.md).

Market data like bars: the viewer role and up (or anyone with PUBLIC_MARKET_DATA); nobody owns them.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from django.db.models import Q, QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from market.api.permissions import MarketDataAccess
from market.api.views import query_data
from market.models import ArbitrageOpportunity, Instrument


class OpportunityQuerySerializer(serializers.Serializer[Any]):
    """The filters of the opportunity list; a bad one is a 400 that names it."""

    open = serializers.BooleanField(required=False, help_text="true: open only; false: closed only; absent: both")
    symbol = serializers.RegexField(
        r"^[A-Za-z0-9.\-_]{1,20}/[A-Za-z0-9.\-_]{1,20}$",
        required=False,
        help_text="BASE/QUOTE, e.g. BTC/USDT (case-insensitive; the quote as detected, see quote equivalence)",
        error_messages={"invalid": "expected BASE/QUOTE, e.g. BTC/USDT"},
    )
    exchange = serializers.SlugField(
        max_length=32, required=False, help_text="Exchange code on either side (buy or sell), e.g. binance"
    )
    since = serializers.DateTimeField(
        required=False, default_timezone=UTC, help_text="Only those still seen at or after this time"
    )


class LegSerializer(serializers.Serializer[Instrument]):
    instrument = serializers.IntegerField(source="pk")
    symbol = serializers.CharField()
    exchange = serializers.CharField(source="exchange.code")


class ArbitrageOpportunitySerializer(serializers.ModelSerializer[ArbitrageOpportunity]):
    open = serializers.SerializerMethodField(help_text="Still above the threshold at the latest detection")
    buy = LegSerializer(source="buy_instrument", read_only=True, help_text="Where to buy, at the latest detection")
    sell = LegSerializer(source="sell_instrument", read_only=True, help_text="Where to sell, at the latest detection")
    max_buy = LegSerializer(source="max_buy_instrument", read_only=True)
    max_sell = LegSerializer(source="max_sell_instrument", read_only=True)

    class Meta:
        model = ArbitrageOpportunity
        fields = [
            "id",
            "symbol",
            "base",
            "quote",
            "open",
            "opened_at",
            "last_seen_at",
            "closed_at",
            "buy",
            "sell",
            "buy_price",
            "sell_price",
            "first_net_bps",
            "last_net_bps",
            "last_gross_bps",
            "max_net_bps",
            "max_gross_bps",
            "max_at",
            "max_buy",
            "max_sell",
            "buy_price_at_max",
            "sell_price_at_max",
            "updates",
        ]
        read_only_fields = fields

    def get_open(self, opportunity: ArbitrageOpportunity) -> bool:
        return opportunity.closed_at is None


class ArbitrageOpportunityViewSet(viewsets.ReadOnlyModelViewSet[ArbitrageOpportunity]):
    """Opportunities, newest first (by opening time); an open one is still above the threshold."""

    permission_classes = [MarketDataAccess]
    serializer_class = ArbitrageOpportunitySerializer
    lookup_value_regex = r"\d+"
    queryset = ArbitrageOpportunity.objects.select_related(
        "buy_instrument__exchange",
        "sell_instrument__exchange",
        "max_buy_instrument__exchange",
        "max_sell_instrument__exchange",
    )

    @extend_schema(parameters=[OpportunityQuerySerializer])
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[ArbitrageOpportunity]:
        queryset = super().get_queryset()
        if self.action != "list":
            return queryset
        query = OpportunityQuerySerializer(data=query_data(self.request))
        query.is_valid(raise_exception=True)
        params = query.validated_data
        if "open" in params:
            queryset = queryset.filter(closed_at__isnull=params["open"])
        if symbol := params.get("symbol"):
            queryset = queryset.filter(symbol__iexact=symbol)
        if exchange := params.get("exchange"):
            queryset = queryset.filter(
                Q(buy_instrument__exchange__code=exchange) | Q(sell_instrument__exchange__code=exchange)
            )
        if since := params.get("since"):
            queryset = queryset.filter(last_seen_at__gte=since)
        return queryset

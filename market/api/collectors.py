"""GET /api/v1/collectors/: each collector's health, as the collectors last reported it."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers, viewsets

from market.api.permissions import MarketDataAccess
from market.models import CollectorStatus


class CollectorStatusSerializer(serializers.ModelSerializer[CollectorStatus]):
    stale = serializers.SerializerMethodField(help_text="Not stopped, yet silent for longer than allowed")

    class Meta:
        model = CollectorStatus
        fields = [
            "name",
            "source",
            "state",
            "stale",
            "breaker_state",
            "last_message_at",
            "messages_per_second",
            "messages",
            "trades",
            "bars_stored",
            "buffered_bars",
            "reconnects",
            "rejected",
            "rejected_reasons",
            "counters",
            "symbols",
            "last_error",
            "host",
            "pid",
            "started_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_stale(self, status: CollectorStatus) -> bool:
        return status.pk in self.context.get("stale_ids", ())


class CollectorStatusViewSet(viewsets.ReadOnlyModelViewSet[CollectorStatus]):
    permission_classes = [MarketDataAccess]  # read-only: viewers, or anyone with PUBLIC_MARKET_DATA
    serializer_class = CollectorStatusSerializer
    queryset = CollectorStatus.objects.all()
    lookup_field = "name"

    def get_serializer_context(self) -> dict[str, Any]:
        from django.conf import settings
        from django.utils import timezone

        context = dict(super().get_serializer_context())
        stale = CollectorStatus.objects.stale(timezone.now(), settings.COLLECTOR_STALE_SECONDS)
        context["stale_ids"] = set(stale.values_list("pk", flat=True))
        return context

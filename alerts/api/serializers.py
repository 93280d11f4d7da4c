"""Shapes and validation of alert rules, firings and notifications. No business logic here."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from alerts.models import AlertFiring, AlertRule, Delivery, Notification, channel_errors, default_source
from alerts.rules import describe, rule_errors
from cryptostock.api_fields import StrictTextMixin
from market.api.serializers import MAX_ID
from market.models import Instrument

RULE_PARAMETERS = (
    "condition",
    "source",
    "target",
    "level",
    "upper",
    "percent",
    "bars",
    "multiplier",
    "finding_kinds",
)


class AlertRuleSerializer(StrictTextMixin, serializers.ModelSerializer[AlertRule]):
    instrument = serializers.PrimaryKeyRelatedField(queryset=Instrument.objects.all())
    symbol = serializers.CharField(source="instrument.symbol", read_only=True)
    description = serializers.SerializerMethodField()

    class Meta:
        model = AlertRule
        fields = [
            "id",
            "name",
            "instrument",
            "symbol",
            "timeframe",
            *RULE_PARAMETERS,
            "description",
            "frequency",
            "cooldown_seconds",
            "expires_at",
            "active",
            "message",
            "channels",
            "webhook_url",
            "webhook_secret",
            "telegram_chat_id",
            "slack_channel",
            "last_fired_at",
            "last_fired_bar_time",
            "fire_count",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "webhook_secret",
            "last_fired_at",
            "last_fired_bar_time",
            "fire_count",
            "created_at",
            "updated_at",
        ]

    def get_description(self, rule: AlertRule) -> str:
        return describe(rule.to_spec())

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # A partial update is validated as the whole rule it would produce.
        def current(name: str, default: Any = None) -> Any:
            if name in attrs:
                return attrs[name]
            return getattr(self.instance, name) if self.instance is not None else default

        if "source" in attrs and attrs["source"] is None:
            attrs["source"] = default_source()
        params = {name: current(name) for name in RULE_PARAMETERS}
        params["source"] = params["source"] or {"indicator": "close"}
        errors: dict[str, Any] = dict(rule_errors(params.pop("condition") or "", **params))
        errors.update(
            channel_errors(
                current("channels", ["in_app"]),
                webhook_url=current("webhook_url", ""),
                telegram=current("telegram_chat_id", ""),
            )
        )
        if "slack" in (current("channels") or []) and not current("slack_channel", ""):
            errors["slack_channel"] = "the slack channel needs a Slack channel id or name"
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class DeliverySerializer(serializers.ModelSerializer[Delivery]):
    class Meta:
        model = Delivery
        fields = ["channel", "status", "attempts", "last_error", "response_code", "sent_at", "updated_at"]


class AlertFiringSerializer(serializers.ModelSerializer[AlertFiring]):
    rule_name = serializers.CharField(source="rule.name", read_only=True)
    instrument = serializers.IntegerField(source="rule.instrument_id", read_only=True)
    symbol = serializers.CharField(source="rule.instrument.symbol", read_only=True)
    timeframe = serializers.CharField(source="rule.timeframe", read_only=True)
    deliveries = DeliverySerializer(many=True, read_only=True)

    class Meta:
        model = AlertFiring
        fields = [
            "id",
            "rule",
            "rule_name",
            "instrument",
            "symbol",
            "timeframe",
            "bar_time",
            "fired_at",
            "intrabar",
            "value",
            "close",
            "volume",
            "message",
            "deliveries",
        ]


class NotificationSerializer(serializers.ModelSerializer[Notification]):
    read = serializers.SerializerMethodField()
    # What a notification list shows without a request per item.
    rule = serializers.IntegerField(source="firing.rule_id", read_only=True)
    rule_name = serializers.CharField(source="firing.rule.name", read_only=True)
    symbol = serializers.CharField(source="firing.rule.instrument.symbol", read_only=True)
    timeframe = serializers.CharField(source="firing.rule.timeframe", read_only=True)
    bar_time = serializers.DateTimeField(source="firing.bar_time", read_only=True)
    intrabar = serializers.BooleanField(source="firing.intrabar", read_only=True)

    class Meta:
        model = Notification
        fields = [
            "id",
            "firing",
            "rule",
            "rule_name",
            "symbol",
            "timeframe",
            "bar_time",
            "intrabar",
            "message",
            "created_at",
            "read_at",
            "read",
        ]

    def get_read(self, notification: Notification) -> bool:
        return notification.read_at is not None


class NotificationIdsSerializer(serializers.Serializer[Any]):
    ids = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=MAX_ID), required=False)


# --- Query filters of the lists: a bad value is a 400 that names it, not a filter quietly dropped ---


class RuleFilterSerializer(serializers.Serializer[Any]):
    instrument = serializers.IntegerField(min_value=1, max_value=MAX_ID, required=False, source="instrument_id")
    active = serializers.BooleanField(required=False)


class FiringFilterSerializer(serializers.Serializer[Any]):
    rule = serializers.IntegerField(min_value=1, max_value=MAX_ID, required=False, source="rule_id")


class NotificationFilterSerializer(serializers.Serializer[Any]):
    unread = serializers.BooleanField(required=False, help_text="true: only unread ones; false: only read ones")

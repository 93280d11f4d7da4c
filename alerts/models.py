"""Alert rules, their firings, the delivery of each firing per channel, and in-app notifications.

Invariants the database keeps: a rule fires at most once per bar (unique rule + bar time, which makes
re-processing a bar harmless), a firing is delivered at most once per channel, and conditions,
firing options and timeframes are known values. Rule parameters are floats, like bar prices
(see `market.models`).
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from alerts.destinations import destination_error
from alerts.messages import template_errors
from alerts.rules import Condition, Frequency, Operand, RuleSpec, rule_errors
from market.models import TIMEFRAME_CHOICES, Instrument
from market.timeframes import TIMEFRAMES


class Channel(models.TextChoices):
    IN_APP = "in_app", "In-app"
    EMAIL = "email", "Email"
    WEBHOOK = "webhook", "Webhook"
    TELEGRAM = "telegram", "Telegram"
    SLACK = "slack", "Slack"


def default_source() -> dict[str, Any]:
    return {"indicator": "close"}


def default_channels() -> list[str]:
    return [Channel.IN_APP.value]


def new_webhook_secret() -> str:
    return secrets.token_hex(32)


def validate_message_template(value: str) -> None:
    errors = template_errors(value)
    if errors:
        raise ValidationError(errors)


def _epoch(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


class AlertRuleQuerySet(models.QuerySet["AlertRule"]):
    def live(self, now: datetime | None = None) -> AlertRuleQuerySet:
        """Rules that may fire at `now` (default: the current time): active and not expired."""
        return self.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now or timezone.now()), active=True)


class AlertRule(models.Model):
    """A condition on one instrument and timeframe, how often it may fire, and where to send it."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="alert_rules")
    name = models.CharField(max_length=100, blank=True)
    instrument = models.ForeignKey(Instrument, on_delete=models.CASCADE, related_name="alert_rules")
    timeframe = models.CharField(max_length=4, choices=TIMEFRAME_CHOICES, default="1m")
    condition = models.CharField(max_length=24, choices=[(c.value, c.value.replace("_", " ")) for c in Condition])
    source = models.JSONField(default=default_source, help_text='e.g. {"indicator": "rsi", "period": 14}')
    target = models.JSONField(null=True, blank=True, help_text='e.g. {"indicator": "ema", "period": 50}')
    level = models.FloatField(
        null=True, blank=True, help_text="Price or indicator level; a channel's lower bound; data quality: min score"
    )
    upper = models.FloatField(null=True, blank=True, help_text="A channel's upper bound")
    percent = models.FloatField(null=True, blank=True, help_text="Moves: the move in percent")
    bars = models.PositiveIntegerField(null=True, blank=True, help_text="Moves, volume average, collector silence")
    multiplier = models.FloatField(null=True, blank=True, help_text="Volume spike: times the average volume")
    finding_kinds = models.JSONField(
        default=list, blank=True, help_text='Data quality: only these findings, e.g. ["gap", "stale"] (empty: any)'
    )
    frequency = models.CharField(
        max_length=20,
        choices=[(f.value, f.value.replace("_", " ")) for f in Frequency],
        default=Frequency.ONCE_PER_BAR_CLOSE.value,
    )
    cooldown_seconds = models.PositiveIntegerField(default=0, help_text="Bar time between two firings, at least")
    expires_at = models.DateTimeField(null=True, blank=True)
    active = models.BooleanField(default=True, help_text="Off: paused")
    message = models.TextField(blank=True, validators=[validate_message_template], help_text="Empty: a default text")
    channels = models.JSONField(default=default_channels, help_text='e.g. ["in_app", "email", "webhook"]')
    webhook_url = models.URLField(max_length=500, blank=True)
    webhook_secret = models.CharField(max_length=64, default=new_webhook_secret, editable=False)
    telegram_chat_id = models.CharField(max_length=64, blank=True)
    slack_channel = models.CharField(max_length=80, blank=True)
    # Evaluation state, written only by alerts.services when the rule fires.
    last_fired_at = models.DateTimeField(null=True, blank=True, editable=False, help_text="Wall-clock time")
    last_fired_bar_time = models.DateTimeField(null=True, blank=True, editable=False)
    fire_count = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = AlertRuleQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["instrument", "timeframe", "active"], name="alertrule_feed_active")]
        constraints = [
            models.CheckConstraint(condition=Q(condition__in=[c.value for c in Condition]), name="alertrule_condition"),
            models.CheckConstraint(condition=Q(frequency__in=[f.value for f in Frequency]), name="alertrule_frequency"),
            models.CheckConstraint(condition=Q(timeframe__in=list(TIMEFRAMES)), name="alertrule_timeframe_known"),
        ]

    def __str__(self) -> str:
        return self.name or f"{self.condition} #{self.pk}"

    def clean(self) -> None:
        errors: dict[str, list[str]] = {
            name: [message]
            for name, message in rule_errors(
                self.condition,
                source=self.source,
                target=self.target,
                level=self.level,
                upper=self.upper,
                percent=self.percent,
                bars=self.bars,
                multiplier=self.multiplier,
                finding_kinds=self.finding_kinds,
            ).items()
        }
        errors.update(channel_errors(self.channels, webhook_url=self.webhook_url, telegram=self.telegram_chat_id))
        if Channel.SLACK in (self.channels or []) and not self.slack_channel:
            errors.setdefault("slack_channel", []).append("the slack channel needs a Slack channel id or name")
        if errors:
            raise ValidationError(errors)

    def to_spec(self) -> RuleSpec:
        return RuleSpec(
            id=self.pk,
            instrument_id=self.instrument_id,
            timeframe=self.timeframe,
            condition=Condition(self.condition),
            source=Operand.parse(self.source or default_source()),
            target=None if self.target is None else Operand.parse(self.target),
            level=self.level,
            upper=self.upper,
            percent=self.percent,
            bars=self.bars,
            multiplier=self.multiplier,
            finding_kinds=tuple(self.finding_kinds or ()),
            frequency=Frequency(self.frequency),
            cooldown_seconds=float(self.cooldown_seconds),
            expires_at=_epoch(self.expires_at),
            active=self.active,
        )


def channel_errors(channels: Any, *, webhook_url: str, telegram: str) -> dict[str, list[str]]:
    known = {c.value for c in Channel}
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        return {"channels": ['must be a list like ["in_app", "email"]']}
    errors: dict[str, list[str]] = {}
    unknown = sorted(set(channels) - known)
    if unknown:
        errors["channels"] = [f"unknown channel {', '.join(unknown)}; use {', '.join(sorted(known))}"]
    if Channel.WEBHOOK in channels and not webhook_url:
        errors["webhook_url"] = ["the webhook channel needs a webhook_url"]
    elif webhook_url:
        refused = destination_error(webhook_url, allow_private=settings.ALERTS_WEBHOOK_ALLOW_PRIVATE)
        if refused is not None:
            errors["webhook_url"] = [refused]
    if Channel.TELEGRAM in channels and not telegram:
        errors["telegram_chat_id"] = ["the telegram channel needs a telegram_chat_id"]
    return errors


class AlertFiring(models.Model):
    """One time a rule fired: about one bar (or, for event rules, one event) of its feed."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="firings")
    bar_time = models.DateTimeField(help_text="Open time of the bar the rule fired on (events: the event's bar)")
    fired_at = models.DateTimeField(default=timezone.now)
    intrabar = models.BooleanField(default=False, help_text="Fired on a partial bar")
    value = models.FloatField(null=True, blank=True)
    close = models.FloatField(null=True, blank=True)
    volume = models.FloatField(null=True, blank=True)
    message = models.TextField()
    payload = models.JSONField(help_text="What was sent to every channel")

    class Meta:
        ordering = ["-fired_at", "-id"]
        constraints = [
            # Replaying or re-processing a bar can never fire the same rule twice for it.
            models.UniqueConstraint(fields=["rule", "bar_time"], name="alertfiring_once_per_rule_bar"),
        ]

    def __str__(self) -> str:
        return f"{self.rule} @ {self.bar_time:%Y-%m-%d %H:%M}"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


class Delivery(models.Model):
    """The delivery of one firing on one channel: retried until sent or given up (recorded)."""

    firing = models.ForeignKey(AlertFiring, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.CharField(max_length=10, choices=Channel.choices)
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    response_code = models.IntegerField(null=True, blank=True, help_text="HTTP status of the last attempt")
    sent_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(fields=["firing", "channel"], name="delivery_once_per_channel"),
            models.CheckConstraint(condition=Q(channel__in=Channel.values), name="delivery_channel_known"),
            models.CheckConstraint(condition=Q(status__in=DeliveryStatus.values), name="delivery_status_known"),
        ]

    def __str__(self) -> str:
        return f"{self.channel} {self.status} (firing {self.firing_id})"


class Notification(models.Model):
    """An in-app notification: the list a user sees, with read state."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="alert_notifications")
    firing = models.OneToOneField(AlertFiring, on_delete=models.CASCADE, related_name="notification")
    message = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "read_at"], name="notification_user_unread")]

    def __str__(self) -> str:
        return self.message[:60]

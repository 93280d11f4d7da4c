"""Delivering a firing on one channel: one attempt at a time, every outcome recorded.

Part of the service layer (it writes deliveries and broadcasts), kept apart from `alerts.services`
because it is a different concern: `deliver_alert_task` calls `attempt_delivery`, and retries with
`backoff_seconds` while the answer is RETRY, then `give_up_delivery` records the final failure.
"""

from __future__ import annotations

import logging
import time
from enum import StrEnum
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.mail import send_mail
from django.db.models import F
from django.utils import timezone

from alerts.groups import user_group
from alerts.models import AlertFiring, AlertRule, Channel, Delivery, DeliveryStatus
from alerts.rules import describe
from alerts.senders import DeliveryError, send_slack, send_telegram, send_webhook

log = logging.getLogger(__name__)


class Attempt(StrEnum):
    SENT = "sent"
    RETRY = "retry"  # failed, but trying again later may work
    FAILED = "failed"  # failed for good
    SKIPPED = "skipped"  # already sent or given up: nothing to do


def backoff_seconds(retries_so_far: int) -> float:
    """Exponential backoff: base, 2 x base, 4 x base, ... (ALERTS_DELIVERY_BACKOFF_SECONDS)."""
    return float(settings.ALERTS_DELIVERY_BACKOFF_SECONDS * 2**retries_so_far)


def attempt_delivery(delivery_id: int) -> Attempt:
    """Try one delivery once and record the outcome. Idempotent: a sent or failed delivery is left alone."""
    delivery = (
        Delivery.objects.select_related("firing__rule__owner", "firing__rule__instrument__exchange")
        .filter(pk=delivery_id, status=DeliveryStatus.PENDING)
        .first()
    )
    if delivery is None:
        return Attempt.SKIPPED
    try:
        code = _send(delivery)
    except DeliveryError as exc:
        Delivery.objects.filter(pk=delivery_id).update(
            attempts=F("attempts") + 1,
            last_error=str(exc)[:2000],
            response_code=exc.status,
            status=DeliveryStatus.PENDING if exc.retryable else DeliveryStatus.FAILED,
            updated_at=timezone.now(),
        )
        log.warning("delivery %s (%s) failed: %s", delivery_id, delivery.channel, exc)
        return Attempt.RETRY if exc.retryable else Attempt.FAILED
    Delivery.objects.filter(pk=delivery_id).update(
        attempts=F("attempts") + 1,
        status=DeliveryStatus.SENT,
        response_code=code,
        last_error="",
        sent_at=timezone.now(),
        updated_at=timezone.now(),
    )
    return Attempt.SENT


def give_up_delivery(delivery_id: int) -> None:
    """Record that a delivery ran out of retries; its last error stays on it."""
    Delivery.objects.filter(pk=delivery_id, status=DeliveryStatus.PENDING).update(
        status=DeliveryStatus.FAILED, updated_at=timezone.now()
    )


def _send(delivery: Delivery) -> int | None:
    firing = delivery.firing
    rule = firing.rule
    payload = {"id": firing.pk, **firing.payload}
    timeout = settings.ALERTS_HTTP_TIMEOUT
    allow_private = settings.ALERTS_WEBHOOK_ALLOW_PRIVATE
    if delivery.channel == Channel.IN_APP:
        _push_in_app(rule.owner_id, payload)
        return None
    if delivery.channel == Channel.EMAIL:
        _send_email(rule, firing)
        return None
    if delivery.channel == Channel.WEBHOOK:
        if not rule.webhook_url:
            raise DeliveryError("the rule has no webhook_url", retryable=False)
        return send_webhook(
            rule.webhook_url,
            rule.webhook_secret,
            payload,
            delivery_id=delivery.pk,
            timestamp=int(time.time()),
            timeout=timeout,
            allow_private=allow_private,
        )
    if delivery.channel == Channel.TELEGRAM:
        token = settings.ALERTS_TELEGRAM_BOT_TOKEN
        return send_telegram(
            settings.ALERTS_TELEGRAM_API_URL,
            token,
            rule.telegram_chat_id,
            firing.message,
            timeout=timeout,
            allow_private=allow_private,
        )
    if delivery.channel == Channel.SLACK:
        token = settings.ALERTS_SLACK_BOT_TOKEN
        return send_slack(
            settings.ALERTS_SLACK_API_URL,
            token,
            rule.slack_channel,
            firing.message,
            timeout=timeout,
            allow_private=allow_private,
        )
    raise DeliveryError(f"unknown channel {delivery.channel!r}", retryable=False)


def _push_in_app(user_id: int, payload: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        raise DeliveryError("no channel layer configured", retryable=False)
    try:
        async_to_sync(layer.group_send)(user_group(user_id), {"type": "alert.fired", "alert": payload})
    except Exception as exc:  # the layer's backend (Redis) is unreachable or full
        raise DeliveryError(f"channel layer: {exc}", retryable=True) from exc
    return


def _send_email(rule: AlertRule, firing: AlertFiring) -> None:
    address = rule.owner.email
    if not address:
        raise DeliveryError("the rule's owner has no email address", retryable=False)
    subject = f"Alert: {rule.name or describe(rule.to_spec())} on {rule.instrument.symbol}"
    try:
        send_mail(subject[:200], firing.message, None, [address])
    except OSError as exc:  # SMTP errors are OSErrors: connection, refusal, timeouts
        raise DeliveryError(f"email: {exc}", retryable=True) from exc
    return

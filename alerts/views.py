"""The Alerts page: the user's rules, a form to create one, the firing history with each channel's
delivery status, and the in-app notifications. Writes go through the JSON API (alerts.api)."""

from __future__ import annotations

from typing import cast

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from accounts import roles
from accounts.page_access import page_requires
from alerts.models import AlertFiring, AlertRule, Channel, Notification
from alerts.rules import PRICE_FIELDS, QUALITY_FINDING_KINDS, UNSUPPORTED, Condition, Frequency, describe
from indicators.catalogue import CATALOGUE
from market.models import Instrument
from market.timeframes import TIMEFRAMES

RECENT_FIRINGS = 50
RECENT_NOTIFICATIONS = 30

# Which parameter fields each kind of condition uses; the form shows only those (the API still
# validates everything and its errors are shown next to the fields).
CONDITION_FIELDS = {
    **{c.value: "source target level" for c in (Condition.CROSSING, Condition.CROSSING_UP, Condition.CROSSING_DOWN)},
    Condition.GREATER_THAN.value: "source target level",
    Condition.LESS_THAN.value: "source target level",
    Condition.ENTERING_CHANNEL.value: "source level upper",
    Condition.EXITING_CHANNEL.value: "source level upper",
    Condition.MOVING_UP_PERCENT.value: "source percent bars",
    Condition.MOVING_DOWN_PERCENT.value: "source percent bars",
    Condition.VOLUME_SPIKE.value: "multiplier bars",
    Condition.DATA_QUALITY.value: "level percent finding_kinds",
    Condition.COLLECTOR_DOWN.value: "bars",
}


def _label(value: str) -> str:
    return value.replace("_", " ").capitalize()


@page_requires(roles.OWN_ALERTS)
def alerts(request: HttpRequest) -> HttpResponse:
    user_id = cast(int, request.user.pk)  # page_requires let only logged-in users in
    rules = AlertRule.objects.filter(owner_id=user_id).select_related("instrument__exchange")
    firings = (
        AlertFiring.objects.filter(rule__owner_id=user_id)
        .select_related("rule__instrument")
        .prefetch_related("deliveries")[:RECENT_FIRINGS]
    )
    notifications = Notification.objects.filter(user_id=user_id)[:RECENT_NOTIFICATIONS]
    context = {
        "rules": [(rule, describe(rule.to_spec())) for rule in rules],
        "firings": firings,
        "notifications": notifications,
        "unread": Notification.objects.filter(user_id=user_id, read_at__isnull=True).count(),
        "instruments": Instrument.objects.active().select_related("exchange"),
        "timeframes": list(TIMEFRAMES),
        "conditions": [(c.value, _label(c.value), CONDITION_FIELDS[c.value]) for c in Condition],
        "frequencies": [(f.value, _label(f.value)) for f in Frequency],
        "channels": [(c.value, c.label) for c in Channel],
        "finding_kinds": [(kind, _label(kind)) for kind in QUALITY_FINDING_KINDS],
        "now": timezone.now(),
        "operands": [*PRICE_FIELDS, *(name for name in CATALOGUE if name not in UNSUPPORTED)],
    }
    return render(request, "alerts/alerts.html", context)

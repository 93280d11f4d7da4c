"""The audit trail: who signed in (or tried to), and who changed users, roles, exchanges,
instruments, alert rules and beat schedules. docs/security.md has the reader's side.

Two records, both read-only in the Django admin (the admin role may view them) and each entry also
written to the `cryptostock.audit` logger, so a log shipper gets them too:

- `AuthEvent` (accounts.models): sign-ins, failed sign-ins, sign-outs, revoked tokens and throttled
  attempts, from Django's sign-in signals (web pages, the admin, and the JWT endpoint's password
  check) and from the JWT views (accounts.api.views). Written by accounts.services.
- django-auditlog's `LogEntry`: each create, change and delete of the models registered below, field
  by field, with who did it. Secrets (password hashes, webhook URLs and secrets) are recorded as
  changed, never with their values.

Who did it: `AuditContextMiddleware` keeps the request in a context variable, and a LogEntry saved
while it runs gets the request's user and client address. The user is read when the entry is saved,
not when the request arrives: DRF authenticates a JWT inside the view, and sets the request's user
there. Outside a request (manage.py, Celery) there is no actor and `additional_data["via"]` names the
process instead.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db.models import Count, Model
from django.http import HttpRequest, HttpResponse

from accounts.models import AuthEvent
from accounts.services import record_auth_event
from cryptostock.api_ratelimit import client_address

log = logging.getLogger("cryptostock.audit")

HIDDEN = "(hidden)"

_current_request: ContextVar[HttpRequest | None] = ContextVar("audit_request", default=None)


class AuditContextMiddleware:
    """Keeps the request for the audit entries written while it is served."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = _current_request.set(request)
        try:
            return self.get_response(request)
        finally:
            _current_request.reset(token)


def hide(value: Any) -> str:
    """auditlog's mask for secrets: that the field changed is recorded, its values are not."""
    return HIDDEN


def register_audited_models() -> None:
    """Called once from accounts.apps: the models whose changes the trail records.

    Not registered: bars and everything the collectors and tasks write all day (the trail would
    drown in them, and the data's own history is in the database), and per-user results (backtests,
    exports, notifications). The fields the system itself updates on every run (an alert rule's
    firing state, a schedule's last run) are left out, so that only people's changes are recorded.
    """
    from auditlog.registry import auditlog
    from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

    from alerts.models import AlertRule
    from market.models import BackfillJob, Exchange, Instrument

    mask = "accounts.audit.hide"
    user_model = get_user_model()
    auditlog.register(
        user_model,
        include_fields=_fields(user_model, "last_login"),
        mask_fields=["password"],
        mask_callable=mask,
        m2m_fields={"groups", "user_permissions"},
    )
    auditlog.register(Group, include_fields=_fields(Group), m2m_fields={"permissions"})
    auditlog.register(Exchange, include_fields=_fields(Exchange))
    auditlog.register(Instrument, include_fields=_fields(Instrument))
    auditlog.register(
        AlertRule,
        include_fields=_fields(AlertRule, "last_fired_at", "last_fired_bar_time", "fire_count", "updated_at"),
        mask_fields=["webhook_url", "webhook_secret"],
        mask_callable=mask,
    )
    # Who started which backfill; its progress (cursor, pages, status...) is the job's own business.
    auditlog.register(BackfillJob, include_fields=["source", "instrument", "timeframe", "start", "end", "gap_fill"])
    auditlog.register(
        PeriodicTask, include_fields=_fields(PeriodicTask, "last_run_at", "total_run_count", "date_changed")
    )
    auditlog.register(CrontabSchedule, include_fields=_fields(CrontabSchedule))
    auditlog.register(IntervalSchedule, include_fields=_fields(IntervalSchedule))


def _fields(model: type[Model], *left_out: str) -> list[str]:
    """The model's own columns but `left_out`. Named, because auditlog would otherwise also list each
    reverse relation (a user's exports, alert rules...) in a new object's record, as None."""
    return [field.name for field in model._meta.concrete_fields if field.name not in left_out]


def fill_in_who(sender: Any, instance: Any, **kwargs: Any) -> None:
    """pre_save of auditlog's LogEntry: the actor, the client and the request, or the process."""
    request = _current_request.get()
    data = dict(instance.additional_data or {})
    if request is None:
        data.setdefault("via", process_name())
    else:
        user = getattr(request, "user", None)
        if instance.actor_id is None and user is not None and user.is_authenticated:
            instance.actor_id = user.pk
            instance.actor_email = getattr(user, "email", None) or None
        if instance.remote_addr is None:
            instance.remote_addr = client_address(request)
        data.setdefault("via", f"{request.method} {request.path}")
    instance.additional_data = data


def log_change(sender: Any, instance: Any, **kwargs: Any) -> None:
    """post_save of auditlog's LogEntry: the same entry to the `cryptostock.audit` logger."""
    if not kwargs.get("created"):
        return
    via = (instance.additional_data or {}).get("via")
    actor = instance.actor_email or (f"user {instance.actor_id}" if instance.actor_id else None)
    log.info(
        "%s %s %s by %s: %s",
        instance.get_action_display(),
        instance.content_type.model,
        instance.object_repr,
        f"{actor} ({via})" if actor else via,
        sorted(instance.changes_dict) if instance.changes else "-",
        extra={
            "audit": "change",
            "action": instance.get_action_display(),
            "model": instance.content_type.model,
            "object_pk": str(instance.object_pk),
            "actor_id": instance.actor_id,
            "address": instance.remote_addr,
            "via": via,
        },
    )


def process_name() -> str:
    """What wrote an entry outside a request: `manage.py <command>`, or the program's name."""
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    if program == "manage.py" and len(sys.argv) > 1:
        return f"manage.py {sys.argv[1]}"
    return program


def on_logged_in(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    """user_logged_in: a sign-in on a web page or the admin (the API's are recorded by its view)."""
    if request is not None:
        record_auth_event(AuthEvent.Kind.LOGIN, request, user=user)


def on_logged_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if request is not None and user is not None:
        record_auth_event(AuthEvent.Kind.LOGOUT, request, user=user)


def on_login_failed(sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any) -> None:
    """user_login_failed: a wrong password or unknown user, on a web page, the admin or the API
    (simplejwt checks passwords with Django's `authenticate`, which sends this signal)."""
    if request is not None:
        username = credentials.get("username")
        record_auth_event(AuthEvent.Kind.LOGIN_FAILED, request, username=username if isinstance(username, str) else "")


@dataclass(frozen=True)
class SignInSummary:
    """The System page's view of the recent sign-in events."""

    by_kind: dict[str, int]
    # (address, failed sign-ins, names tried), most failures first
    failing_addresses: list[tuple[str, int, int]]


def sign_in_summary(now: datetime, hours: int = 24, top: int = 5) -> SignInSummary:
    since = now - timedelta(hours=hours)
    recent = AuthEvent.objects.filter(time__gte=since)
    counts = dict(recent.values("kind").annotate(n=Count("id")).values_list("kind", "n"))
    failing = (
        recent.filter(kind__in=[AuthEvent.Kind.LOGIN_FAILED, AuthEvent.Kind.THROTTLED], address__isnull=False)
        .values("address")
        .annotate(failures=Count("id"), names=Count("username", distinct=True))
        .order_by("-failures", "address")[:top]
    )
    return SignInSummary(
        by_kind={kind.value: counts.get(kind.value, 0) for kind in AuthEvent.Kind},
        failing_addresses=[(str(row["address"]), row["failures"], row["names"]) for row in failing],
    )

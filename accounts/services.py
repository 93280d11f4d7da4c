"""Writes for users and their roles: the one place that creates users, changes roles and records
sign-in events (accounts.audit)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from auditlog.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser, Group, Permission
from django.contrib.auth.password_validation import validate_password
from django.core.cache import cache
from django.db import transaction
from prometheus_client import Counter
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from accounts.capabilities import forget
from accounts.models import AuthEvent
from accounts.roles import ROLE_PERMISSIONS, ROLES, STAFF_ROLES
from cryptostock.api_ratelimit import client_address, limit_window_end


def user_roles(user: AbstractUser) -> list[str]:
    """The user's roles, lowest first (uses prefetched groups when there are)."""
    names = {group.name for group in user.groups.all()}
    return [role for role in ROLES if role in names]


@transaction.atomic
def set_role(user: AbstractUser, role: str) -> None:
    """Give the user exactly this role (replacing any other), and staff status with admin."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
    # Only what changes, so that the audit trail records the change and nothing else.
    other_roles = list(user.groups.filter(name__in=ROLES).exclude(name=role))
    if other_roles:
        user.groups.remove(*other_roles)
    if not user.groups.filter(name=role).exists():
        user.groups.add(role_group(role))
    is_staff = role in STAFF_ROLES or user.is_superuser
    if user.is_staff != is_staff:
        user.is_staff = is_staff
        user.save(update_fields=["is_staff"])
    forget(user)


def role_group(role: str) -> Group:
    """The role's group. Migration 0002_roles makes the groups; one deleted since (by a superuser in
    the admin, or by a flush of the database) is made again with the role's permissions, so that
    giving a role never fails for want of its group."""
    group, created = Group.objects.get_or_create(name=role)
    if created:
        group.permissions.set(_permissions(ROLE_PERMISSIONS[role]))
    return group


def _permissions(names: list[str]) -> list[Permission]:
    codenames = [name.split(".", 1)[1] for name in names]
    found = Permission.objects.filter(codename__in=codenames).select_related("content_type")
    by_name = {f"{permission.content_type.app_label}.{permission.codename}": permission for permission in found}
    missing = [name for name in names if name not in by_name]
    if missing:
        raise LookupError(f"permissions not in the database: {', '.join(missing)}")
    return [by_name[name] for name in names]


@transaction.atomic
def create_user(*, username: str, password: str, role: str, email: str = "") -> AbstractUser:
    """A new active user with this role; the password must pass the configured validators
    (django.core.exceptions.ValidationError lists what it fails)."""
    user_model = get_user_model()
    user = user_model(username=username, email=email)
    validate_password(password, user)
    user.set_password(password)
    user.full_clean()
    user.save()
    set_role(user, role)
    return user


def revoke_refresh_token(token: OutstandingToken) -> None:
    """Blacklist a refresh token: it can no longer be refreshed (its access tokens expire soon)."""
    BlacklistedToken.objects.get_or_create(token=token)


audit_log = logging.getLogger("cryptostock.audit")

# On /metrics (docs/metrics.md), for an alert on password guessing that the rate limit alone hides.
SIGN_IN_EVENTS = Counter(
    "cryptostock_sign_in_events", "Sign-in events of the audit trail, by kind and by web or API", ["kind", "via"]
)


def record_auth_event(kind: str, request: Any, *, username: str = "", user: Any = None) -> AuthEvent:
    """Record a sign-in event (an AuthEvent row and a `cryptostock.audit` log line). `request` is the
    Django or DRF request it happened in; `user` the account it concerns, if there is one."""
    if user is not None and not getattr(user, "is_authenticated", False):
        user = None
    event = AuthEvent.objects.create(
        kind=kind,
        via=AuthEvent.Via.API if request.path.startswith("/api/") else AuthEvent.Via.WEB,
        username=(username or getattr(user, "username", "") or "")[:150],
        user_id=getattr(user, "pk", None),
        address=client_address(request),
        user_agent=request.META.get("HTTP_USER_AGENT", "")[:300],
    )
    SIGN_IN_EVENTS.labels(event.kind, event.via).inc()
    audit_log.info(
        "%s: %s via %s from %s",
        event.get_kind_display(),
        event.username or "?",
        event.via,
        event.address or "?",
        extra={
            "audit": "auth",
            "kind": event.kind,
            "username": event.username,
            "user_id": event.user_id,
            "via": event.via,
            "address": event.address,
        },
    )
    return event


def record_throttled_once(request: Any, seconds: int, *, username: str = "") -> None:
    """Record a refused (rate-limited) sign-in attempt, once per client and limit window: a client
    that keeps trying is refused cheaply, not written down a thousand times a second."""
    address = client_address(request) or "?"
    key = f"audit:throttled:{address}:{limit_window_end(seconds)}"
    try:
        first = cache.add(key, 1, timeout=max(1, seconds))
    except Exception:  # the cache is down: the rate limit is not checked either (api_ratelimit)
        return
    if first:
        record_auth_event(AuthEvent.Kind.THROTTLED, request, username=username)


def prune_audit_trail(now: datetime, days: int) -> tuple[int, int]:
    """Delete sign-in events and change records older than `days` (0: keep everything); returns how
    many of each were deleted. Entries are deleted in batches, so no long lock is held."""
    if days <= 0:
        return 0, 0
    cutoff = now - timedelta(days=days)
    events = _delete_in_batches(AuthEvent.objects.filter(time__lt=cutoff))
    changes = _delete_in_batches(LogEntry.objects.filter(timestamp__lt=cutoff))
    return events, changes


def _delete_in_batches(queryset: Any, batch: int = 5_000) -> int:
    deleted = 0
    while True:
        ids = list(queryset.values_list("pk", flat=True)[:batch])
        if not ids:
            return deleted
        deleted += queryset.model.objects.filter(pk__in=ids).delete()[0]

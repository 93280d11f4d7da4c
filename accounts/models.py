"""Capabilities (what a role lets its users do, as Django permissions) and sign-in events.

Roles are Django groups (viewer, analyst, admin; see `accounts.roles`) holding these permissions.
Views check capabilities, never group names, so a site can shape its own roles in the admin.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Capability(models.Model):
    """Not a table: Django permissions must belong to a model, and these belong to no other model
    (the alerts, backtests and exports apps check them before their own models exist)."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("read_market_data", "Read market data: exchanges, instruments, bars"),
            ("own_alerts", "Create and manage own alert rules"),
            ("own_backtests", "Run and read own backtests"),
            ("own_exports", "Create and download own exports"),
            ("manage_instruments", "Create, change and deactivate exchanges and instruments"),
            ("manage_collectors", "Start, stop and configure collectors"),
            ("manage_users", "Create users and assign their roles"),
        ]

    def __str__(self) -> str:
        return "capabilities"


class AuthEventKind(models.TextChoices):
    LOGIN = "login", "signed in"
    LOGIN_FAILED = "login_failed", "sign-in failed"
    LOGOUT = "logout", "signed out"
    TOKEN_REVOKED = "token_revoked", "token revoked"
    THROTTLED = "throttled", "too many attempts"


class AuthEventVia(models.TextChoices):
    WEB = "web", "web page"
    API = "api", "API"


class AuthEvent(models.Model):
    """One sign-in, failed sign-in, sign-out, revoked token or throttled attempt: the security half of
    the audit trail (the other half, who changed what, is django-auditlog's LogEntry; accounts.audit)."""

    Kind = AuthEventKind
    Via = AuthEventVia

    time = models.DateTimeField(auto_now_add=True, db_index=True)
    kind = models.CharField(max_length=16, choices=AuthEventKind.choices)
    via = models.CharField(max_length=3, choices=AuthEventVia.choices)
    # As typed: a failed attempt may name no user at all, and a user renamed later keeps this name here.
    username = models.CharField(max_length=150, blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="auth_events"
    )
    address = models.GenericIPAddressField(null=True, blank=True, help_text="The client, as the rate limits see it")
    user_agent = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-time", "-id"]
        default_permissions = ("view",)
        indexes = [models.Index(fields=["kind", "-time"], name="authevent_kind_time")]
        constraints = [
            models.CheckConstraint(condition=models.Q(kind__in=AuthEventKind.values), name="authevent_kind"),
            models.CheckConstraint(condition=models.Q(via__in=AuthEventVia.values), name="authevent_via"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.username or '?'} ({self.get_via_display()})"

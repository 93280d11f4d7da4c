"""Capabilities: what a role lets its users do, as Django permissions.

Roles are Django groups (viewer, analyst, admin; see `accounts.roles`) holding these permissions.
Views check capabilities, never group names, so a site can shape its own roles in the admin.
"""

from __future__ import annotations

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

"""The roles: Django groups and the permissions each grants.

A role includes every permission of the roles before it. Migration 0002_roles creates the groups
with a frozen copy of this table (a migration must not change when this file does); a test checks
that the two agree, so a change here needs a new migration that applies it.
"""

from __future__ import annotations

VIEWER = "viewer"
ANALYST = "analyst"
ADMIN = "admin"
ROLES = (VIEWER, ANALYST, ADMIN)

READ_MARKET_DATA = "accounts.read_market_data"
OWN_ALERTS = "accounts.own_alerts"
OWN_BACKTESTS = "accounts.own_backtests"
OWN_EXPORTS = "accounts.own_exports"
MANAGE_INSTRUMENTS = "accounts.manage_instruments"
MANAGE_COLLECTORS = "accounts.manage_collectors"
MANAGE_USERS = "accounts.manage_users"

_VIEWER = [READ_MARKET_DATA]
_ANALYST = [*_VIEWER, OWN_ALERTS, OWN_BACKTESTS, OWN_EXPORTS]
_ADMIN = [
    *_ANALYST,
    MANAGE_INSTRUMENTS,
    MANAGE_COLLECTORS,
    MANAGE_USERS,
    # What the Django admin needs to manage users, their roles, exchanges and instruments. No
    # delete permissions: users and instruments are deactivated, never deleted.
    "auth.view_user",
    "auth.add_user",
    "auth.change_user",
    "auth.view_group",
    "market.view_exchange",
    "market.add_exchange",
    "market.change_exchange",
    "market.view_instrument",
    "market.add_instrument",
    "market.change_instrument",
    "market.view_bar",
    "market.view_arbitrageopportunity",  # granted by market's migration 0010
    # The audit trail, read-only (accounts.audit); granted by accounts' migration 0003.
    "accounts.view_authevent",
    "auditlog.view_logentry",
]

ROLE_PERMISSIONS: dict[str, list[str]] = {VIEWER: _VIEWER, ANALYST: _ANALYST, ADMIN: _ADMIN}

# Admins sign in to the Django admin, which requires is_staff.
STAFF_ROLES = frozenset({ADMIN})

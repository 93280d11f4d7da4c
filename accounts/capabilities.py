"""What a user may do, remembered for a few seconds per process.

Django's permission check costs two queries (the user's own and their groups' permissions), and
the API checks on every request while roles change rarely: each process remembers a user's
permissions for `CAPABILITY_CACHE_SECONDS`. A role taken away therefore applies within that many
seconds (at once in the process that changed it); 0 checks the database every time.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from django.conf import settings

MAX_REMEMBERED = 10_000

# (user id, date joined) -> (monotonic expiry, permissions). The join date tells a new user who got
# a recycled id (SQLite reuses them after a rollback) from the old one.
_remembered: dict[tuple[Any, datetime], tuple[float, frozenset[str]]] = {}


def has_capability(user: Any, capability: str) -> bool:
    """Whether the roles of this (authenticated or anonymous) user grant `capability`."""
    if not user.is_active:
        return False
    if user.is_superuser:
        return True
    return capability in permissions_of(user)


def permissions_of(user: Any) -> frozenset[str]:
    seconds = settings.CAPABILITY_CACHE_SECONDS
    if seconds <= 0 or user.pk is None:
        return frozenset(user.get_all_permissions())
    key = (user.pk, user.date_joined)
    now = time.monotonic()
    remembered = _remembered.get(key)
    if remembered is not None and remembered[0] > now:
        return remembered[1]
    permissions = frozenset(user.get_all_permissions())
    if len(_remembered) >= MAX_REMEMBERED:
        _remembered.clear()
    _remembered[key] = (now + seconds, permissions)
    return permissions


def forget(user: Any) -> None:
    """The user's roles changed: check them afresh (in this process; others within the cache time)."""
    for key in [key for key in _remembered if key[0] == user.pk]:
        _remembered.pop(key, None)

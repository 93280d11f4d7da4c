"""Writes for users and their roles: the one place that creates users and changes roles."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser, Group
from django.contrib.auth.password_validation import validate_password
from django.db import transaction
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from accounts.capabilities import forget
from accounts.roles import ROLES, STAFF_ROLES


def user_roles(user: AbstractUser) -> list[str]:
    """The user's roles, lowest first (uses prefetched groups when there are)."""
    names = {group.name for group in user.groups.all()}
    return [role for role in ROLES if role in names]


@transaction.atomic
def set_role(user: AbstractUser, role: str) -> None:
    """Give the user exactly this role (replacing any other), and staff status with admin."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
    user.groups.remove(*Group.objects.filter(name__in=ROLES).exclude(name=role))
    user.groups.add(Group.objects.get(name=role))
    is_staff = role in STAFF_ROLES or user.is_superuser
    if user.is_staff != is_staff:
        user.is_staff = is_staff
        user.save(update_fields=["is_staff"])
    forget(user)


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

"""Writes for users and their roles: the one place that creates users and changes roles."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser, Group, Permission
from django.contrib.auth.password_validation import validate_password
from django.db import transaction
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from accounts.capabilities import forget
from accounts.roles import ROLE_PERMISSIONS, ROLES, STAFF_ROLES


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

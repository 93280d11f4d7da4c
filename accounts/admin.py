"""Users and their roles in the Django admin.

Admins (the admin role) manage users and roles here but cannot make anyone a superuser or grant
single permissions outside the roles, and cannot change superusers: otherwise the change-user
permission alone would let them raise themselves to superuser.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.models import AbstractUser
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.models import AuthEvent
from accounts.roles import ROLES
from accounts.services import set_role, user_roles

User = get_user_model()


def _set_role_action(role: str) -> Any:
    @admin.action(description=f"Give the selected users the {role} role", permissions=["change"])
    def action(modeladmin: UserAdmin, request: HttpRequest, queryset: QuerySet[AbstractUser]) -> None:
        changed = 0
        for user in queryset:
            if modeladmin.has_change_permission(request, user):
                set_role(user, role)
                changed += 1
        modeladmin.message_user(request, f"{changed} user(s) now have the {role} role.", messages.SUCCESS)

    action.__name__ = f"make_{role}"
    return action


admin.site.unregister(User)


@admin.register(User)
class UserAdmin(DjangoUserAdmin[AbstractUser]):
    list_display = ("username", "email", "roles", "is_active", "is_staff", "is_superuser", "last_login")
    list_filter = ("groups", "is_active", "is_staff", "is_superuser")
    actions = [_set_role_action(role) for role in ROLES]

    @admin.display(description="Roles")
    def roles(self, user: AbstractUser) -> str:
        return ", ".join(user_roles(user)) or "—"

    def get_queryset(self, request: HttpRequest) -> QuerySet[AbstractUser]:
        return super().get_queryset(request).prefetch_related("groups")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        readonly = tuple(super().get_readonly_fields(request, obj))
        if not request.user.is_superuser:
            readonly += ("is_superuser", "user_permissions")
        return readonly

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False
        return super().has_change_permission(request, obj)


@admin.register(AuthEvent)
class AuthEventAdmin(admin.ModelAdmin[AuthEvent]):
    """Sign-ins and refused attempts, read-only: the audit trail is written by the product alone."""

    list_display = ("time", "kind", "username", "user", "via", "address", "user_agent")
    list_filter = ("kind", "via", "time")
    search_fields = ("username", "address")
    date_hierarchy = "time"
    list_select_related = ("user",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser
from rest_framework import serializers
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken

from accounts.roles import ROLES
from accounts.services import user_roles


class MeSerializer(serializers.ModelSerializer[Any]):
    roles = serializers.SerializerMethodField(help_text=f"Of {', '.join(ROLES)}; lowest first")
    capabilities = serializers.SerializerMethodField(help_text="What the roles allow, e.g. read_market_data")
    email = serializers.CharField(read_only=True, help_text="Empty when not set")

    class Meta:
        model = get_user_model()
        fields = ["id", "username", "email", "first_name", "last_name", "is_staff", "roles", "capabilities"]
        read_only_fields = fields

    def get_roles(self, user: AbstractUser) -> list[str]:
        return user_roles(user)

    def get_capabilities(self, user: AbstractUser) -> list[str]:
        return sorted(perm.split(".", 1)[1] for perm in user.get_all_permissions() if perm.startswith("accounts."))


class RefreshTokenSerializer(serializers.ModelSerializer[OutstandingToken]):
    """One of the user's refresh tokens (a login on some device); the token itself is never shown."""

    revoked = serializers.SerializerMethodField()

    class Meta:
        model = OutstandingToken
        fields = ["id", "jti", "created_at", "expires_at", "revoked"]
        read_only_fields = fields

    def get_revoked(self, token: OutstandingToken) -> bool:
        return hasattr(token, "blacklistedtoken")

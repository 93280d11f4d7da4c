"""The current user, their logins (refresh tokens), and the JWT endpoints under /api/v1/auth/."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt import views as jwt_views
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken

from accounts.api.serializers import MeSerializer, RefreshTokenSerializer
from accounts.permissions import IsOwner, OwnedObjectsMixin
from accounts.services import revoke_refresh_token


class MeView(APIView):
    """The user making the request, with their roles and what those allow."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses=MeSerializer)
    def get(self, request: Request, version: str) -> Response:
        return Response(MeSerializer(request.user).data)


class MyRefreshTokensViewSet(
    OwnedObjectsMixin[OutstandingToken], mixins.ListModelMixin, viewsets.GenericViewSet[OutstandingToken]
):
    """The user's unexpired refresh tokens, one per login; revoking one logs that device out."""

    permission_classes = [IsAuthenticated, IsOwner]
    queryset = OutstandingToken.objects.select_related("blacklistedtoken").order_by("-created_at")
    serializer_class = RefreshTokenSerializer
    owner_field = "user"
    lookup_value_regex = r"\d+"

    def get_queryset(self) -> QuerySet[OutstandingToken]:
        return super().get_queryset().filter(expires_at__gt=timezone.now())

    @extend_schema(request=None, responses={204: OpenApiResponse(description="Revoked")})
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        revoke_refresh_token(self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


# The JWT endpoints, in the "auth" rate-limit group: a low limit per client IP against password guessing.


class TokenObtainView(jwt_views.TokenObtainPairView):
    """Log in with username and password: an access token (60 minutes) and a refresh token."""

    ratelimit_group = "auth"


class TokenRefreshView(jwt_views.TokenRefreshView):
    """A new access token and a new refresh token for a refresh token, which is then revoked."""

    ratelimit_group = "auth"


class TokenVerifyView(jwt_views.TokenVerifyView):
    """Whether a token is valid (200) or not (401)."""

    ratelimit_group = "auth"


class LogoutView(jwt_views.TokenBlacklistView):
    """Log out: revoke the refresh token (access tokens issued with it expire on their own)."""

    ratelimit_group = "auth"

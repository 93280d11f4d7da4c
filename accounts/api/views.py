"""The current user, their logins (refresh tokens), and the JWT endpoints under /api/v1/auth/."""

from __future__ import annotations

from typing import Any, NoReturn

from django.contrib.auth import get_user_model
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
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.api.serializers import MeSerializer, RefreshTokenSerializer
from accounts.models import AuthEvent
from accounts.permissions import IsOwner, OwnedObjectsMixin
from accounts.services import record_auth_event, record_throttled_once, revoke_refresh_token


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
        record_auth_event(AuthEvent.Kind.TOKEN_REVOKED, request, user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


# The JWT endpoints, in the "auth" rate-limit group: a low limit per client IP against password
# guessing. Sign-ins, sign-outs and refused attempts go to the audit trail (accounts.audit); a
# wrong password is recorded by Django's user_login_failed signal, which simplejwt's check sends.


class AuthRateLimited(APIView):
    ratelimit_group = "auth"

    def throttled(self, request: Request, wait: float) -> NoReturn:
        username = request.data.get("username") if isinstance(request.data, dict) else None
        record_throttled_once(request, int(wait or 60), username=username if isinstance(username, str) else "")
        super().throttled(request, wait)


class TokenObtainView(AuthRateLimited, jwt_views.TokenObtainPairView):
    """Log in with username and password: an access token (60 minutes) and a refresh token."""

    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        # simplejwt's post, which keeps the serializer to itself: its user is the one who signed in.
        serializer = self.get_serializer(data=request.data)
        try:
            serializer.is_valid(raise_exception=True)
        except TokenError as exc:
            raise InvalidToken(exc.args[0]) from exc
        record_auth_event(AuthEvent.Kind.LOGIN, request, user=serializer.user)  # type: ignore[attr-defined]
        return Response(serializer.validated_data, status=status.HTTP_200_OK)


class TokenRefreshView(AuthRateLimited, jwt_views.TokenRefreshView):
    """A new access token and a new refresh token for a refresh token, which is then revoked."""


class TokenVerifyView(AuthRateLimited, jwt_views.TokenVerifyView):
    """Whether a token is valid (200) or not (401)."""


class LogoutView(AuthRateLimited, jwt_views.TokenBlacklistView):
    """Log out: revoke the refresh token (access tokens issued with it expire on their own)."""

    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        response = super().post(request, *args, **kwargs)  # refuses a bad token by raising
        # The token was checked and revoked above: its user claim can be read without checking again.
        token = RefreshToken(request.data["refresh"], verify=False)  # type: ignore[call-overload]
        user_id = token.get(jwt_settings.USER_ID_CLAIM)
        user = get_user_model().objects.filter(pk=user_id).first()
        record_auth_event(AuthEvent.Kind.LOGOUT, request, user=user)
        return response

"""Alert rules (CRUD), their firing history and the in-app notification list: each user's own only."""

from __future__ import annotations

from typing import Any, cast

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.permissions import CanOwnAlerts, IsOwner, OwnedObjectsMixin
from alerts import services
from alerts.api.serializers import (
    AlertFiringSerializer,
    AlertRuleSerializer,
    FiringFilterSerializer,
    NotificationFilterSerializer,
    NotificationIdsSerializer,
    NotificationSerializer,
    RuleFilterSerializer,
)
from alerts.models import AlertFiring, AlertRule, Notification
from market.api.views import validated_query


def _user_id(request: Request) -> int:
    return cast(int, request.user.pk)


class AlertRuleViewSet(OwnedObjectsMixin[AlertRule], viewsets.ModelViewSet[AlertRule]):
    """The user's alert rules. Pause a rule with `{"active": false}`."""

    permission_classes = [CanOwnAlerts, IsOwner]
    queryset = AlertRule.objects.select_related("instrument__exchange")
    serializer_class = AlertRuleSerializer
    lookup_value_regex = r"\d+"

    @extend_schema(parameters=[RuleFilterSerializer])
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[AlertRule]:
        return super().get_queryset().filter(**validated_query(RuleFilterSerializer, self.request))

    @extend_schema(request=None, responses=AlertRuleSerializer)
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """A new webhook signing secret; the old one stops verifying at once."""
        rule = self.get_object()
        services.rotate_webhook_secret(rule)
        return Response(self.get_serializer(rule).data)


class AlertFiringViewSet(viewsets.ReadOnlyModelViewSet[AlertFiring]):
    """Every time one of the user's rules fired, newest first, with the delivery status per channel."""

    permission_classes = [CanOwnAlerts]
    serializer_class = AlertFiringSerializer
    lookup_value_regex = r"\d+"

    @extend_schema(parameters=[FiringFilterSerializer])
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[AlertFiring]:
        queryset = (
            AlertFiring.objects.filter(rule__owner_id=self.request.user.pk)
            .select_related("rule__instrument")
            .prefetch_related("deliveries")
        )
        return queryset.filter(**validated_query(FiringFilterSerializer, self.request))


READ_COUNT = inline_serializer("NotificationsRead", {"marked_read": serializers.IntegerField()})


class NotificationViewSet(
    OwnedObjectsMixin[Notification],
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet[Notification],
):
    """The user's in-app alert notifications, newest first; `?unread=true` for the unread ones,
    `?unread=false` for the read ones."""

    permission_classes = [CanOwnAlerts, IsOwner]
    queryset = Notification.objects.select_related("firing__rule__instrument")
    serializer_class = NotificationSerializer
    owner_field = "user"
    lookup_value_regex = r"\d+"

    @extend_schema(parameters=[NotificationFilterSerializer])
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[Notification]:
        queryset = super().get_queryset()
        if (unread := validated_query(NotificationFilterSerializer, self.request).get("unread")) is not None:
            queryset = queryset.filter(read_at__isnull=unread)
        return queryset

    @extend_schema(request=None, responses=NotificationSerializer)
    @action(detail=True, methods=["post"])
    def read(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        notification = self.get_object()
        services.mark_notifications_read(_user_id(request), [notification.pk])
        notification.refresh_from_db()
        return Response(self.get_serializer(notification).data)

    @extend_schema(request=NotificationIdsSerializer, responses=READ_COUNT)
    @action(detail=False, methods=["post"], url_path="read-all")
    def read_all(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Mark every unread notification read, or only those whose `ids` are given."""
        body = NotificationIdsSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        count = services.mark_notifications_read(_user_id(request), body.validated_data.get("ids"))
        return Response({"marked_read": count})

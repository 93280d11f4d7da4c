"""GET /api/v1/audit/sign-ins/ and /api/v1/audit/changes/: the audit trail, read-only (accounts.audit,
docs/security.md), for whoever may view it in the admin (the admin role; superusers).

Newest first, paginated like every list; a bad filter is a 400 that names it. A SIEM or a script
polls these with `since=` the last time it saw.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from auditlog.models import LogEntry
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import AuthEvent, AuthEventKind
from accounts.permissions import HasCapability
from market.api.serializers import reject_empty_span
from market.api.views import validated_query

ACTIONS = {LogEntry.Action.CREATE: "create", LogEntry.Action.UPDATE: "update", LogEntry.Action.DELETE: "delete"}


class CanReadSignIns(HasCapability):
    capability = "accounts.view_authevent"


class CanReadChanges(HasCapability):
    capability = "auditlog.view_logentry"


class TimeRangeQuerySerializer(serializers.Serializer[Any]):
    since = serializers.DateTimeField(required=False, default_timezone=UTC, help_text="At or after this time")
    until = serializers.DateTimeField(required=False, default_timezone=UTC, help_text="Before this time")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        reject_empty_span(attrs, first="since", last="until")
        return attrs


class SignInQuerySerializer(TimeRangeQuerySerializer):
    kind = serializers.ChoiceField(choices=AuthEventKind.choices, required=False)
    username = serializers.CharField(max_length=150, required=False, help_text="The name given, exactly")
    user = serializers.IntegerField(min_value=1, required=False, help_text="The account's id")
    address = serializers.IPAddressField(required=False, help_text="The client's address")


class ChangeQuerySerializer(TimeRangeQuerySerializer):
    model = serializers.RegexField(
        r"^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$",
        required=False,
        help_text="app_label.model, e.g. auth.user, market.instrument, alerts.alertrule",
        error_messages={"invalid": "expected app_label.model, e.g. auth.user"},
    )
    object = serializers.CharField(max_length=255, required=False, help_text="The changed object's primary key")
    actor = serializers.IntegerField(min_value=1, required=False, help_text="The id of the user who made the change")
    action = serializers.ChoiceField(choices=sorted(ACTIONS.values()), required=False)
    request_id = serializers.RegexField(
        r"^[A-Za-z0-9._:-]{1,64}$", required=False, help_text="The X-Request-ID of the request that made the change"
    )


class SignInSerializer(serializers.ModelSerializer[AuthEvent]):
    class Meta:
        model = AuthEvent
        fields = ["id", "time", "kind", "via", "username", "user", "address", "user_agent"]
        read_only_fields = fields


class ChangeSerializer(serializers.ModelSerializer[LogEntry]):
    time = serializers.DateTimeField(source="timestamp")
    action = serializers.SerializerMethodField(help_text="create, update or delete")
    model = serializers.SerializerMethodField(help_text="app_label.model")
    object = serializers.CharField(source="object_pk")
    changes = serializers.JSONField(
        source="changes_dict", help_text="Per field: [old, new]; for roles and permissions, what was added or removed"
    )
    actor = serializers.IntegerField(source="actor_id", allow_null=True, help_text="Empty: a command or a task")
    address = serializers.IPAddressField(source="remote_addr", allow_null=True)
    via = serializers.SerializerMethodField(help_text="The request, or the process outside one")
    request_id = serializers.CharField(source="cid", allow_null=True, help_text="The request's X-Request-ID")

    class Meta:
        model = LogEntry
        fields = [
            "id", "time", "action", "model", "object", "object_repr", "changes",
            "actor", "address", "via", "request_id",
        ]  # fmt: skip
        read_only_fields = fields

    def get_action(self, entry: LogEntry) -> str:
        return ACTIONS.get(entry.action, str(entry.action))

    def get_model(self, entry: LogEntry) -> str:
        return f"{entry.content_type.app_label}.{entry.content_type.model}"

    def get_via(self, entry: LogEntry) -> str | None:
        via = (entry.additional_data or {}).get("via")
        return str(via) if via is not None else None


class SignInViewSet(mixins.ListModelMixin, viewsets.GenericViewSet[AuthEvent]):
    """Sign-ins, failed sign-ins, sign-outs, revoked logins and throttled attempts, newest first."""

    permission_classes = [CanReadSignIns]
    serializer_class = SignInSerializer
    queryset = AuthEvent.objects.all()

    @extend_schema(parameters=[SignInQuerySerializer])
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[AuthEvent]:
        queryset = super().get_queryset()
        params = validated_query(SignInQuerySerializer, self.request)
        filters: dict[str, Any] = {name: params[name] for name in ("kind", "username", "address") if name in params}
        if "user" in params:
            filters["user_id"] = params["user"]
        return _in_range(queryset.filter(**filters), "time", params)


class ChangeViewSet(mixins.ListModelMixin, viewsets.GenericViewSet[LogEntry]):
    """Who created, changed or deleted which user, role, exchange, instrument, alert rule or schedule."""

    permission_classes = [CanReadChanges]
    serializer_class = ChangeSerializer
    queryset = LogEntry.objects.select_related("content_type").order_by("-timestamp", "-id")

    @extend_schema(parameters=[ChangeQuerySerializer])
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[LogEntry]:
        queryset = super().get_queryset()
        params = validated_query(ChangeQuerySerializer, self.request)
        if model := params.get("model"):
            app_label, name = model.split(".")
            queryset = queryset.filter(content_type__app_label=app_label, content_type__model=name)
        if "object" in params:
            queryset = queryset.filter(object_pk=params["object"])
        if "actor" in params:
            queryset = queryset.filter(actor_id=params["actor"])
        if "request_id" in params:
            queryset = queryset.filter(cid=params["request_id"])
        if action := params.get("action"):
            queryset = queryset.filter(action={v: k for k, v in ACTIONS.items()}[action])
        return _in_range(queryset, "timestamp", params)


def _in_range[M: Any](queryset: QuerySet[M], field: str, params: dict[str, Any]) -> QuerySet[M]:
    if "since" in params:
        queryset = queryset.filter(**{f"{field}__gte": params["since"]})
    if "until" in params:
        queryset = queryset.filter(**{f"{field}__lt": params["until"]})
    return queryset

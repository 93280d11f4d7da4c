"""Who may call an endpoint, for every app's API: capabilities (granted by roles) and ownership.

Not logged in and not allowed gives 401; logged in without the capability gives 403; another user's
object gives 404, because `OwnedObjectsMixin` never lets it into the queryset (so its existence does
not leak either).

    class AlertRuleViewSet(OwnedObjectsMixin, viewsets.ModelViewSet):
        permission_classes = [CanOwnAlerts, IsOwner]
        queryset = AlertRule.objects.all()
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.db.models import Model, QuerySet
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.serializers import BaseSerializer

from accounts import roles
from accounts.capabilities import has_capability


class HasCapability(BasePermission):
    """The user's roles grant `capability` (superusers have every one)."""

    capability: ClassVar[str]
    message = "Your role does not allow this."

    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(request.user and has_capability(request.user, self.capability))


class CanReadMarketData(HasCapability):
    capability = roles.READ_MARKET_DATA


class CanOwnAlerts(HasCapability):
    capability = roles.OWN_ALERTS


class CanOwnBacktests(HasCapability):
    capability = roles.OWN_BACKTESTS


class CanOwnExports(HasCapability):
    capability = roles.OWN_EXPORTS


class CanManageInstruments(HasCapability):
    capability = roles.MANAGE_INSTRUMENTS


class CanManageCollectors(HasCapability):
    capability = roles.MANAGE_COLLECTORS


class CanManageUsers(HasCapability):
    capability = roles.MANAGE_USERS


def owner_id(obj: Model, owner_field: str) -> Any:
    return getattr(obj, f"{owner_field}_id")


class IsOwner(BasePermission):
    """The object belongs to the user: its `view.owner_field` (default "owner") points at them.

    A second line of defence behind `OwnedObjectsMixin`, for views that fetch objects some other way.
    """

    def has_object_permission(self, request: Request, view: Any, obj: Model) -> bool:
        field = getattr(view, "owner_field", "owner")
        return bool(request.user.is_authenticated and owner_id(obj, field) == request.user.pk)


class OwnedObjectsMixin[M: Model]:
    """For generic views over user-owned objects: only the user's own objects exist for them, and
    new objects are created as theirs (the owner is never taken from the request body)."""

    owner_field: ClassVar[str] = "owner"

    def get_queryset(self) -> QuerySet[M]:
        queryset: QuerySet[M] = super().get_queryset()  # type: ignore[misc]
        return queryset.filter(**{self.owner_field: _requester(self)})

    def perform_create(self, serializer: BaseSerializer[M]) -> None:
        serializer.save(**{self.owner_field: _requester(self)})


def _requester(view: Any) -> Any:
    # Not `self.request.user` with `request: Request` declared on the mixin: the views it is mixed
    # into declare `request` as Django's HttpRequest, and mypy would reject the combination.
    return view.request.user

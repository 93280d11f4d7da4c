"""OpenAPI generation: every operation documents the errors it can answer, in the one error shape."""

from __future__ import annotations

from typing import Any

from drf_spectacular import openapi
from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from drf_spectacular.utils import OpenApiResponse
from rest_framework import permissions, serializers


class RememberingJWTScheme(SimpleJWTScheme):  # type: ignore[no-untyped-call]
    """Our JWT authentication is simplejwt's with the user remembered: the same bearer scheme
    (drf-spectacular matches its extensions by exact class, not subclasses)."""

    target_class = "accounts.authentication.RememberingJWTAuthentication"


class ErrorDetailSerializer(serializers.Serializer[Any]):
    code = serializers.CharField(help_text="Stable machine-readable code: invalid, not_found, throttled, ...")
    message = serializers.CharField(help_text="What went wrong, naming the bad parameter or field")
    # Declared fields leave the class body (DRF's metaclass collects them), so this does not shadow
    # Serializer.fields at run time; mypy sees only the class attribute.
    fields = serializers.DictField(  # type: ignore[assignment]
        child=serializers.JSONField(),
        help_text=(
            "Each bad parameter or body field with its messages (a list of strings; nested fields "
            "and list items as nested objects); empty when the problem is not about one field"
        ),
    )


class ErrorSerializer(serializers.Serializer[Any]):
    error = ErrorDetailSerializer()


RETRY_AFTER = {"schema": {"type": "integer"}, "description": "Seconds until the rate limit lets requests in again"}


def _error(description: str) -> OpenApiResponse:
    return OpenApiResponse(ErrorSerializer, description=description)


class AutoSchema(openapi.AutoSchema):
    def _is_public(self) -> bool:
        return all(isinstance(p, permissions.AllowAny) for p in self.view.get_permissions())

    def _error_responses(self) -> dict[str, OpenApiResponse]:
        errors: dict[str, OpenApiResponse] = {}
        has_body = self.method in ("POST", "PUT", "PATCH")
        has_query = self.method == "GET" and bool(self._get_parameters())
        if has_body or has_query:
            errors["400"] = _error("Invalid parameters or body: `fields` names each bad one")
        errors["401"] = _error("Not authenticated, or the token is invalid or expired")
        if not self._is_public():
            errors["403"] = _error("Authenticated, but the role does not allow this")
        if "{" in self.path.replace("{version}", ""):  # a path with an object id in it
            errors["404"] = _error("No such object (or not yours)")
        if has_body:
            errors["415"] = _error("The body is not JSON (send Content-Type: application/json)")
        errors["429"] = _error("Too many requests; retry after `Retry-After` seconds")
        return errors

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses: dict[str, Any] = super()._get_response_bodies(direction)
        for status, response in self._error_responses().items():
            if status not in responses:
                responses[status] = self._get_response_for_code(  # type: ignore[no-untyped-call]
                    response, status, direction=direction
                )
        if "429" in responses:
            responses["429"].setdefault("headers", {})["Retry-After"] = RETRY_AFTER
        return responses

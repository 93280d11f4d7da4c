"""One JSON error shape for the whole API: {"error": {"code", "message", "fields"}}.

`code` is a stable machine-readable word (`invalid`, `not_authenticated`, `permission_denied`,
`not_found`, `throttled`, ...), `message` a sentence that names the problem, and `fields` maps each
bad parameter or body field to its messages (empty when the problem is not about one field).

Two layers produce it: `exception_handler` for everything DRF raises, and `ApiErrorMiddleware` for
responses Django makes itself under /api/ (no such URL, method not allowed by a plain view, a crash
that became Django's 500 page), which would otherwise be HTML. A database that cannot be reached
(down, restarting, out of connections) is a 503 `unavailable` with `Retry-After`, not a 500: the
client did nothing wrong and may simply try again.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse
from django.utils.deprecation import MiddlewareMixin
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from cryptostock.api_json import dumps

log = logging.getLogger(__name__)

API_PREFIX = "/api/"
JSON = "application/json"

# Codes for errors Django answers itself, by status; DRF's own exceptions carry theirs.
STATUS_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "request_too_large",
    415: "unsupported_media_type",
    429: "throttled",
}
# Seconds a client is asked to wait when the database is unreachable.
UNAVAILABLE_RETRY_AFTER = 5


def error_body(code: str, message: str, fields: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


def _first_message(detail: Any) -> str:
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    if isinstance(detail, dict) and detail:
        key, value = next(iter(detail.items()))
        if key == "non_field_errors":
            return _first_message(value)
        return f"{key}: {_first_message(value)}"
    return str(detail)


def _as_api_exception(exc: Exception) -> Exception:
    if isinstance(exc, Http404):
        return exceptions.NotFound()
    if isinstance(exc, PermissionDenied):
        return exceptions.PermissionDenied(*exc.args)
    return exc


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    exc = _as_api_exception(exc)
    response = drf_exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return None  # a bug: Django logs it and answers 500, which the middleware turns into JSON
    detail = exc.detail
    code = str(getattr(exc, "default_code", "error"))
    fields: dict[str, Any] = {}
    if isinstance(exc, exceptions.ValidationError):
        code = "invalid"
        if isinstance(detail, dict):
            fields = dict(detail)
    elif isinstance(detail, dict) and "detail" in detail:
        # simplejwt's token errors: {"detail": ..., "code": ..., "messages": [...]}
        code = str(detail.get("code") or code)
        detail = detail["detail"]
    elif isinstance(detail, exceptions.ErrorDetail) and detail.code:
        code = str(detail.code)  # raised with a more specific code than the class's
    response.data = error_body(code, _first_message(detail), fields)
    return response


def _message_for(request: HttpRequest, response: HttpResponse) -> str:
    status = response.status_code
    if status == 404:
        return f"No API endpoint at {request.path}"
    if status == 405:
        return f"Method {request.method} is not allowed here (allowed: {response.get('Allow', 'none')})"
    if status >= 500:
        return "The server could not complete this request; it has been logged."
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


class ApiErrorMiddleware(MiddlewareMixin):
    """Gives Django's own error responses under /api/ the API's JSON error shape, and refuses NUL
    characters in API query strings (no database text column can hold them; every endpoint would
    have to remember to check)."""

    def process_request(self, request: HttpRequest) -> HttpResponse | None:
        if request.path.startswith(API_PREFIX) and any(
            "\x00" in name or any("\x00" in value for value in values) for name, values in request.GET.lists()
        ):
            body = error_body("invalid", "Query parameters may not contain NUL characters (%00)")
            return HttpResponse(dumps(body), status=400, content_type=JSON)
        return None

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """The database could not be reached while serving an API request: 503, try again."""
        if not request.path.startswith(API_PREFIX) or not isinstance(exception, (OperationalError, InterfaceError)):
            return None
        log.warning("database unavailable for %s %s: %s", request.method, request.path, exception)
        body = error_body("unavailable", "The database is unavailable; try again in a few seconds.")
        response = HttpResponse(dumps(body), status=503, content_type=JSON)
        response["Retry-After"] = str(UNAVAILABLE_RETRY_AFTER)
        return response

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if (
            response.status_code < 400
            or not request.path.startswith(API_PREFIX)
            or response.get("Content-Type", "").startswith(JSON)
            or response.streaming
        ):
            return response
        status = response.status_code
        code = STATUS_CODES.get(status, "server_error" if status >= 500 else "error")
        json_response = HttpResponse(
            dumps(error_body(code, _message_for(request, response))), status=status, content_type=JSON
        )
        for header in ("Allow", "Retry-After", "WWW-Authenticate", "Vary"):
            if header in response:
                json_response[header] = response[header]
        return json_response

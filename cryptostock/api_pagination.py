"""Limit/offset pagination that refuses bad values (DRF's quietly ignores them): `?limit=abc` is a
400 naming `limit`, like every other bad parameter, and the schema states the ranges."""

from __future__ import annotations

from typing import Any

from rest_framework import pagination
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request

MAX_LIMIT = 1000
# Far beyond any real list, and inside every database's integer range.
MAX_OFFSET = 2**31 - 1


def _bounded_int(request: Request, name: str, default: int, minimum: int, maximum: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and minimum <= int(raw) <= maximum):
        raise ValidationError({name: [f"must be a whole number from {minimum} to {maximum}, not {raw[:20]!r}"]})
    return int(raw)


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    max_limit = MAX_LIMIT

    def get_limit(self, request: Request) -> int:
        return _bounded_int(request, self.limit_query_param, self.default_limit or MAX_LIMIT, 1, MAX_LIMIT)

    def get_offset(self, request: Request) -> int:
        return _bounded_int(request, self.offset_query_param, 0, 0, MAX_OFFSET)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters: list[dict[str, Any]] = super().get_schema_operation_parameters(view)
        bounds = {self.limit_query_param: (1, MAX_LIMIT), self.offset_query_param: (0, MAX_OFFSET)}
        for parameter in parameters:
            minimum, maximum = bounds[parameter["name"]]
            parameter["schema"].update(minimum=minimum, maximum=maximum)
        return parameters

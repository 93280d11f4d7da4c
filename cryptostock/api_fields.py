"""Serializer behaviour shared by the API's writable resources."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework import serializers


class StrictTextMixin:
    """Text fields take JSON strings only. DRF's CharField turns a number into its text, so
    `{"name": 42}` was stored as "42": the schema says string, and a number there is more likely a
    client's mistake (a field mixed up) than a name. A non-string is a 400 naming the field.

    For bodies only: form and query values are strings anyway."""

    fields: Any

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            wrong = {
                name: ["Not a valid string."]
                for name, field in self.fields.items()
                if isinstance(field, serializers.CharField)
                and not field.read_only
                and data.get(name) is not None
                and not isinstance(data[name], str)
            }
            if wrong:
                raise serializers.ValidationError(wrong)
        return super().to_internal_value(data)  # type: ignore[misc]

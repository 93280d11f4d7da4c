"""Rate limits: django-ratelimit's counters, per endpoint group, behind DRF's throttle interface.

The throttle runs after authentication, so a JWT user is counted as that user (a middleware would
run before DRF knows who is asking); DRF then answers 429 with `Retry-After`, in the API's error
shape. Limits per group come from `settings.API_RATE_LIMITS`; a view joins a group with
`ratelimit_group = "<name>"`.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django_ratelimit.core import get_usage
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

log = logging.getLogger(__name__)

DEFAULT_GROUP = "default"


def _user_key(group: str, request: Any) -> str:
    return f"user:{request.user.pk}"


def retry_after(request: HttpRequest | Request, group: str) -> int | None:
    """Count this request against `group`'s limit: None if it may go on, else seconds to wait."""
    if not settings.RATELIMIT_ENABLE:
        return None
    rates = settings.API_RATE_LIMITS.get(group) or settings.API_RATE_LIMITS[DEFAULT_GROUP]
    user = getattr(request, "user", None)
    authenticated = user is not None and user.is_authenticated
    try:
        usage = get_usage(
            request,
            group=f"api.{group}",
            key=_user_key if authenticated else "ip",
            rate=rates["user" if authenticated else "anon"],
            increment=True,
        )
    except Exception as exc:  # the cache is down: serve the request rather than refuse every one
        log.warning("rate limit not checked, the cache failed: %s: %s", exc.__class__.__name__, exc)
        return None
    if usage is None or not usage["should_limit"]:
        return None
    return max(1, usage["time_left"])


class RateLimitThrottle(BaseThrottle):
    def allow_request(self, request: Request, view: Any) -> bool:
        self.retry_after = retry_after(request, getattr(view, "ratelimit_group", DEFAULT_GROUP))
        return self.retry_after is None

    def wait(self) -> float | None:
        return self.retry_after

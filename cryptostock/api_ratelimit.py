"""Rate limits: django-ratelimit's counters, per endpoint group, behind DRF's throttle interface.

The throttle runs after authentication, so a JWT user is counted as that user (a middleware would
run before DRF knows who is asking); DRF then answers 429 with `Retry-After`, in the API's error
shape. Limits per group come from `settings.API_RATE_LIMITS`; a view joins a group with
`ratelimit_group = "<name>"`.

The counting is django-ratelimit's (`get_usage`: its fixed windows, cache keys and clock), with one
change: its `add` then `incr`, two cache round trips per request, are one `count` where the cache
has it (cryptostock.redis_cache, the production cache). Those two round trips were the largest part
of the request thread's time in an uncached bars request after the bars themselves (a quarter of
it, sampled with py-spy). Other caches (the local-memory one of the embedded
setup and tests) count as get_usage does.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.http import HttpRequest
from django.utils.module_loading import import_string
from django_ratelimit import ALL
from django_ratelimit import core as ratelimit_core
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

log = logging.getLogger(__name__)

DEFAULT_GROUP = "default"


def retry_after(request: HttpRequest | Request, group: str) -> int | None:
    """Count this request against `group`'s limit: None if it may go on, else seconds to wait."""
    if not settings.RATELIMIT_ENABLE:
        return None
    rates = settings.API_RATE_LIMITS.get(group) or settings.API_RATE_LIMITS[DEFAULT_GROUP]
    user = getattr(request, "user", None)
    authenticated = user is not None and user.is_authenticated
    rate = rates["user" if authenticated else "anon"]
    who = f"user:{getattr(user, 'pk', None)}" if authenticated else ratelimit_core._get_ip(request)
    limit, period = ratelimit_core._split_rate(rate)
    window = ratelimit_core._get_window(who, period)
    key = ratelimit_core._make_cache_key(f"api.{group}", window, rate, who, ALL)
    try:
        count = _count(key, period + ratelimit_core.EXPIRATION_FUDGE)
    except Exception as exc:  # the cache is down: serve the request rather than refuse every one
        log.warning("rate limit not checked, the cache failed: %s: %s", exc.__class__.__name__, exc)
        return None
    if count is None:  # the counter vanished between add and incr: as get_usage, refuse unless failing open
        return None if getattr(settings, "RATELIMIT_FAIL_OPEN", False) else 1
    if count <= limit:
        return None
    return max(1, window - int(ratelimit_core.time.time()))


def limit_window_end(seconds_left: int) -> int:
    """The end of the current limit window, `seconds_left` from now by the limiter's clock: the same
    number for every request refused in one window."""
    return int(ratelimit_core.time.time()) + seconds_left


def _count(key: str, timeout: int) -> int | None:
    cache: Any = caches[settings.RATELIMIT_USE_CACHE]
    if hasattr(cache, "count"):
        return int(cache.count(key, timeout))
    if cache.add(key, 1, timeout):
        return 1
    try:
        return int(cache.incr(key))
    except ValueError:
        return None


class RateLimitThrottle(BaseThrottle):
    def allow_request(self, request: Request, view: Any) -> bool:
        self.retry_after = retry_after(request, getattr(view, "ratelimit_group", DEFAULT_GROUP))
        return self.retry_after is None

    def wait(self) -> float | None:
        return self.retry_after


def client_address(request: HttpRequest | Request) -> str | None:
    """The client's IP address, read where the rate limits read it (`RATELIMIT_IP_META_KEY`, else
    REMOTE_ADDR) but whole: the rate limits count IPv6 clients by /64 network."""
    key = settings.RATELIMIT_IP_META_KEY
    if not key:
        raw = request.META.get("REMOTE_ADDR", "")
    elif callable(key):
        raw = key(request)
    elif "." in key:
        raw = import_string(key)(request)
    else:
        raw = request.META.get(key, "")
    try:
        return str(ipaddress.ip_address(str(raw).split(",")[0].strip()))
    except ValueError:
        return None

"""Server-rendered pages and the health endpoints."""

from __future__ import annotations

import asyncio
import logging
import uuid

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache

from market.models import Instrument
from market.queries import most_recently_updated

log = logging.getLogger(__name__)


def chart(request: HttpRequest) -> HttpResponse:
    instruments = list(Instrument.objects.active().select_related("exchange"))
    default_instrument = most_recently_updated([instrument.pk for instrument in instruments])
    return render(request, "market/chart.html", {"instruments": instruments, "default_instrument": default_instrument})


@never_cache
def health(request: HttpRequest) -> JsonResponse:
    """The process is alive and serving requests; says nothing about its dependencies."""
    return JsonResponse({"status": "ok"})


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _check_cache() -> None:
    key = f"ready-probe-{uuid.uuid4().hex}"
    cache.set(key, "1", timeout=5)
    if cache.get(key) != "1":
        raise RuntimeError("value written was not read back")
    cache.delete(key)


async def _probe_channel_layer() -> None:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "ready.probe"})
    message = await asyncio.wait_for(layer.receive(channel), timeout=3)
    if message.get("type") != "ready.probe":
        raise RuntimeError("message sent was not received back")


def _check_channel_layer() -> None:
    async_to_sync(_probe_channel_layer)()


def _check_collectors() -> None:
    """Every collector that has not stopped reported within COLLECTOR_STALE_SECONDS."""
    from django.conf import settings
    from django.utils import timezone

    from market.models import CollectorStatus

    stale = list(
        CollectorStatus.objects.stale(timezone.now(), settings.COLLECTOR_STALE_SECONDS).values_list("name", flat=True)
    )
    if stale:
        raise RuntimeError(f"no report for over {settings.COLLECTOR_STALE_SECONDS:g} s from: {', '.join(stale)}")


READINESS_CHECKS = {
    "database": _check_database,
    "cache": _check_cache,
    "channel_layer": _check_channel_layer,
    "collectors": _check_collectors,
}


@never_cache
def ready(request: HttpRequest) -> JsonResponse:
    """Ready to serve: every dependency answers. 503 names the components that do not.

    `?skip=collectors` leaves components out: a web container's own health check should not fail
    because a collector in another container went silent (that one is alerted on by itself)."""
    skipped = {name.strip() for name in request.GET.get("skip", "").split(",") if name.strip()}
    unknown = sorted(skipped - READINESS_CHECKS.keys())
    if unknown:
        known = ", ".join(READINESS_CHECKS)
        return JsonResponse({"error": f"skip: unknown component(s) {', '.join(unknown)}; known: {known}"}, status=400)
    components: dict[str, str] = {}
    for name, check in READINESS_CHECKS.items():
        if name in skipped:
            continue
        try:
            check()
            components[name] = "ok"
        except Exception as exc:  # any failure of a dependency means not ready, whatever its type
            log.warning("readiness check %s failed: %s", name, exc)
            components[name] = f"error: {exc.__class__.__name__}: {exc}"
    failing = [name for name, state in components.items() if state != "ok"]
    status = 503 if failing else 200
    body = {"status": "unavailable" if failing else "ready", "failing": failing, "components": components}
    return JsonResponse(body, status=status)

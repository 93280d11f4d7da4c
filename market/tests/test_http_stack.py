"""HTTP through the ASGI application as daphne serves it: one synchronous middleware chain, entered once."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import iscoroutinefunction, sync_to_async
from channels.testing import HttpCommunicator
from rest_framework_simplejwt.tokens import AccessToken

from cryptostock.http_handler import SyncChainASGIHandler

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_middleware_chain_is_built_synchronous_so_a_request_enters_a_worker_thread_once():
    """Django's stock ASGI handler builds the chain for the event loop, where each of our (all
    MiddlewareMixin) middlewares' hooks takes its own trip to a worker thread."""
    handler = SyncChainASGIHandler()

    assert not iscoroutinefunction(handler._middleware_chain)  # type: ignore[attr-defined]


async def request(path: str, headers: list[tuple[bytes, bytes]]) -> tuple[int, dict[bytes, bytes], bytes]:
    from cryptostock.asgi import application

    communicator = HttpCommunicator(application, "GET", path, headers=[(b"host", b"127.0.0.1"), *headers])
    response = await communicator.get_response(timeout=10)
    await communicator.wait(timeout=10)  # the application's own end: the request finished, its thread idle
    return response["status"], {name.lower(): value for name, value in response["headers"]}, response["body"]


async def test_a_bars_request_through_the_asgi_application(settings, instrument, make_user, close_thread_connections):
    settings.ALLOWED_HOSTS = ["127.0.0.1"]
    reader = await sync_to_async(make_user)()
    reader.is_superuser = True  # roles do not survive a transactional test's flush; a superuser may read
    await sync_to_async(reader.save)()
    token = str(await sync_to_async(AccessToken.for_user)(reader))
    auth = [(b"authorization", f"Bearer {token}".encode())]

    status, headers, body = await request(f"/api/v1/bars/?instrument={instrument.pk}&timeframe=1m", auth)

    assert status == 200
    assert json.loads(body) == {"instrument": instrument.pk, "timeframe": "1m", "bars": []}
    # The whole chain ran around the view: the security middleware added its headers.
    assert headers[b"x-content-type-options"] == b"nosniff"
    assert b"referrer-policy" in headers


async def test_errors_through_the_asgi_application_keep_the_api_error_shape(settings, close_thread_connections):
    settings.ALLOWED_HOSTS = ["127.0.0.1"]

    status, headers, body = await request("/api/v1/nothing-here/", [])

    assert status in (401, 404)
    assert headers[b"content-type"] == b"application/json"
    assert set(json.loads(body)["error"]) == {"code", "message", "fields"}


async def test_requests_reuse_the_worker_thread_of_an_earlier_request(settings, close_thread_connections):
    """Not a new thread (and a second one to join it) per request, as asgiref's default would have."""
    from cryptostock.asgi import django_asgi_app

    settings.ALLOWED_HOSTS = ["127.0.0.1"]
    await request("/api/v1/nothing-here/", [])
    idle = list(django_asgi_app._idle)

    await request("/api/v1/nothing-here/", [])

    assert idle
    assert django_asgi_app._idle == idle

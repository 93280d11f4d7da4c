"""HTTP through the ASGI application as daphne serves it: one synchronous middleware chain, entered once."""

from __future__ import annotations

import json
from typing import Any

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
    reader = await sync_to_async(make_user)("viewer")
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


class RequestSignals:
    """Counts request_started and request_finished, and whether the body had gone out at the finish."""

    def __init__(self) -> None:
        self.started = 0
        self.finished = 0

    def on_started(self, **kwargs: object) -> None:
        self.started += 1

    def on_finished(self, **kwargs: object) -> None:
        self.finished += 1


@pytest.fixture
def request_signals():
    from django.core import signals

    counter = RequestSignals()
    signals.request_started.connect(counter.on_started)
    signals.request_finished.connect(counter.on_finished)
    yield counter
    signals.request_started.disconnect(counter.on_started)
    signals.request_finished.disconnect(counter.on_finished)


async def messages_of(path: str) -> list[dict[str, Any]]:
    """Every message the application sends for one GET, in order."""
    from cryptostock.asgi import application

    communicator = HttpCommunicator(application, "GET", path, headers=[(b"host", b"127.0.0.1")])
    await communicator.send_input({"type": "http.request", "body": b""})
    messages: list[dict[str, Any]] = []
    while not messages or messages[-1].get("more_body", False) or messages[-1]["type"] != "http.response.body":
        messages.append(await communicator.receive_output(timeout=10))
    await communicator.wait(timeout=10)
    return messages


@pytest.mark.urls("market.tests.http_stack_urls")
async def test_a_body_in_memory_goes_out_as_one_message_and_the_request_is_started_and_finished_once(
    settings, request_signals, close_thread_connections
):
    settings.ALLOWED_HOSTS = ["127.0.0.1"]

    messages = await messages_of("/big")

    assert [message["type"] for message in messages] == ["http.response.start", "http.response.body"]
    assert messages[1]["body"] == b"x" * 200_000
    assert (request_signals.started, request_signals.finished) == (1, 1)


@pytest.mark.urls("market.tests.http_stack_urls")
async def test_a_streaming_response_is_sent_part_by_part_and_closed_after(
    settings, request_signals, close_thread_connections
):
    from market.tests import http_stack_urls

    settings.ALLOWED_HOSTS = ["127.0.0.1"]
    http_stack_urls.CLOSED.clear()

    messages = await messages_of("/streaming")

    assert b"".join(message.get("body", b"") for message in messages[1:]) == b"first,second"
    assert http_stack_urls.CLOSED == ["streaming"]
    assert (request_signals.started, request_signals.finished) == (1, 1)

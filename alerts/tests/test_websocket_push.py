"""In-app alerts reach the owner's open WebSockets, through the real ASGI application and the
configured channel layer, and nobody else's."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from alerts import services
from alerts.models import AlertRule, DeliveryStatus, Notification
from alerts.rules import Condition
from alerts.tests.conftest import utc
from cryptostock.asgi import application

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_thread_connections")]
# Users here have no role: pushing an alert to its owner needs no capability.


def session_cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode()


async def connect(cookie: bytes | None = None) -> WebsocketCommunicator:
    headers = [(b"host", b"127.0.0.1")] + ([(b"cookie", cookie)] if cookie else [])
    communicator = WebsocketCommunicator(application, "/ws/v1/market/", headers=headers)
    connected, _ = await communicator.connect(timeout=10)  # a loaded machine: the handshake reads the user
    assert connected
    return communicator


def fire_rule(owner, instrument):
    rule = AlertRule.objects.create(
        owner=owner,
        instrument=instrument,
        condition=Condition.CROSSING_UP,
        level=0.0019,
        channels=["in_app"],
        message="{{ticker}} crossed at {{close}}",
    )
    [firing] = services.record_firings(
        [services.Candidate(rule, utc("2017-11-06 04:32"), 0.00190091, 0.00190091, 193.0)]
    )
    return rule, firing


async def test_an_alert_is_pushed_to_its_owner_and_to_nobody_else(make_user, btc, settings):
    settings.PUBLIC_MARKET_DATA = True  # lets the anonymous socket in: it must get nothing
    owner = await sync_to_async(make_user)()
    someone_else = await sync_to_async(make_user)()
    owner_socket = await connect(await sync_to_async(session_cookie)(owner))
    other_socket = await connect(await sync_to_async(session_cookie)(someone_else))
    anonymous_socket = await connect()

    rule, firing = await sync_to_async(fire_rule)(owner, btc)

    message = await owner_socket.receive_json_from(timeout=5)
    assert message["type"] == "alert"
    assert message["id"] == firing.pk
    assert message["rule"]["id"] == rule.pk
    assert message["message"] == "UNITTEST/BTC crossed at 0.00190091"
    assert (message["bar_time"], message["close"]) == ("2017-11-06T04:32:00Z", 0.00190091)
    assert await other_socket.receive_nothing(timeout=0.5)
    assert await anonymous_socket.receive_nothing(timeout=0.1)
    delivered = await sync_to_async(lambda: firing.deliveries.get().status)()
    assert delivered == DeliveryStatus.SENT
    assert await sync_to_async(Notification.objects.filter(user=owner, firing=firing).count)() == 1

    # The market protocol is unchanged on the same connection
    await owner_socket.send_json_to({"action": "ping"})
    assert await owner_socket.receive_json_from(timeout=5) == {"type": "pong"}
    for socket in (owner_socket, other_socket, anonymous_socket):
        await socket.disconnect()


async def test_a_closed_connection_leaves_the_users_group(make_user, btc):
    owner = await sync_to_async(make_user)()
    first = await connect(await sync_to_async(session_cookie)(owner))
    await first.disconnect()
    second = await connect(await sync_to_async(session_cookie)(owner))

    await sync_to_async(fire_rule)(owner, btc)

    assert (await second.receive_json_from(timeout=5))["type"] == "alert"
    await second.disconnect()


async def test_an_alert_fired_as_soon_as_the_socket_opens_reaches_it(make_user, btc, monkeypatch):
    # Given a slow permission check during the handshake (a busy database thread)
    from market import consumers

    check = consumers._may_read_market_data

    async def slow_check(user):
        await asyncio.sleep(0.3)
        return await check(user)

    monkeypatch.setattr(consumers, "_may_read_market_data", slow_check)
    owner = await sync_to_async(make_user)()
    socket = await connect(await sync_to_async(session_cookie)(owner))

    # When an alert fires the moment the client sees the socket open
    await sync_to_async(fire_rule)(owner, btc)

    # Then the socket gets it: it joined its owner's group before the handshake completed
    assert (await socket.receive_json_from(timeout=5))["type"] == "alert"
    await socket.disconnect()

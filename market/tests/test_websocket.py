"""The live WebSocket protocol (docs/websocket.md) through the real ASGI application and the configured
channel layer: auth, subscriptions and snapshots, updates, limits, malformed input, slow clients."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncGenerator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.test import Client
from rest_framework_simplejwt.tokens import AccessToken

from cryptostock.asgi import application
from cryptostock.websocket_transport import WRITABLE_EXTENSION
from market.bars import MINUTE_MS, Trade
from market.barstore import BarRow
from market.collector import Collector
from market.services import (
    COLUMNS_MIN_BARS,
    apublish_bar,
    prepare_bar_messages,
    publish_arbitrage_opportunity,
    publish_bars,
    store_bars,
)
from market.sources.base import Source, SourceEvent, TradeEvent
from market.sources.replay import ReplaySource

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_thread_connections")]

HOST = [(b"host", b"127.0.0.1")]
START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def public(settings):
    settings.PUBLIC_MARKET_DATA = True


@pytest.fixture
def private(settings):
    settings.PUBLIC_MARKET_DATA = False


def bar(instrument_id: int, minute: int, close: float, *, final: bool, timeframe: str = "1m") -> BarRow:
    return BarRow(
        instrument_id, timeframe, START + timedelta(minutes=minute), close, close, close, close, 1.0, 1, close, final
    )


async def connect(path: str = "/ws/v1/market/", headers: list[tuple[bytes, bytes]] | None = None, app: Any = None):
    communicator = WebsocketCommunicator(app or application, path, headers=HOST + (headers or []))
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    return communicator


async def subscribe(communicator: WebsocketCommunicator, instrument_id: int, timeframe: str = "1m") -> dict[str, Any]:
    await communicator.send_json_to({"action": "subscribe", "instrument": instrument_id, "timeframe": timeframe})
    return await communicator.receive_json_from(timeout=5)


async def closed_with(communicator: WebsocketCommunicator) -> tuple[list[dict[str, Any]], int]:
    """The frames sent before the server closed, and the close code."""
    frames: list[dict[str, Any]] = []
    while True:
        output = await communicator.receive_output(timeout=5)
        if output["type"] == "websocket.close":
            return frames, output["code"]
        frames.append(json.loads(output["text"]))


def session_cookie(user) -> tuple[bytes, bytes]:
    client = Client()
    client.force_login(user)
    return (
        b"cookie",
        f"{django_settings.SESSION_COOKIE_NAME}={client.cookies[django_settings.SESSION_COOKIE_NAME].value}".encode(),
    )


# --- subscribe, snapshot, updates, unsubscribe ----------------------------------------------------


async def test_a_subscriber_gets_a_snapshot_then_partial_and_final_bars_until_it_unsubscribes(public, instrument):
    # Given two stored bars
    await sync_to_async(store_bars)(
        [bar(instrument.pk, 0, 1.0, final=True), bar(instrument.pk, 1, 2.0, final=True)], publish=False
    )
    client = await connect()

    # When the client subscribes, it gets the latest bars at once
    snapshot = await subscribe(client, instrument.pk)
    assert snapshot["type"] == "snapshot"
    assert (snapshot["instrument"], snapshot["timeframe"]) == (instrument.pk, "1m")
    assert [b["close"] for b in snapshot["bars"]] == [1.0, 2.0]

    # Then a partial and a final bar of the series reach it, other series' bars do not
    await apublish_bar(bar(instrument.pk, 2, 2.5, final=False))
    await apublish_bar(bar(instrument.pk, 2, 9.9, final=False, timeframe="5m"))
    await sync_to_async(publish_bars)([bar(instrument.pk, 2, 3.0, final=True)])
    partial = await client.receive_json_from(timeout=5)
    assert partial["type"] == "bar"
    assert (partial["bar"]["close"], partial["bar"]["final"]) == (2.5, False)
    final = await client.receive_json_from(timeout=5)
    assert (final["bar"]["close"], final["bar"]["final"]) == (3.0, True)
    assert "indicators" in final

    # When it unsubscribes, it is told so and gets no more bars
    await client.send_json_to({"action": "unsubscribe", "instrument": instrument.pk, "timeframe": "1m"})
    assert await client.receive_json_from(timeout=5) == {
        "type": "unsubscribed",
        "instrument": instrument.pk,
        "timeframe": "1m",
    }
    await apublish_bar(bar(instrument.pk, 3, 4.0, final=False))
    assert await client.receive_nothing(timeout=0.3)
    await client.disconnect()


async def test_ping_is_answered_with_pong(public):
    client = await connect()
    await client.send_json_to({"action": "ping"})
    assert await client.receive_json_from(timeout=5) == {"type": "pong"}
    await client.disconnect()


async def test_collector_state_changes_reach_the_collectors_channel(public, instrument, sample_data, tmp_path):
    with gzip.open(sample_data / "freqtrade" / "XRP_ETH-trades.json.gz", "rt") as handle:
        recording = tmp_path / "XRP_ETH-trades.json"
        recording.write_text(json.dumps(json.load(handle)[:50]))
    client = await connect()
    await client.send_json_to({"action": "subscribe", "channel": "collectors"})
    assert await client.receive_json_from(timeout=5) == {"type": "subscribed", "channel": "collectors"}

    source = ReplaySource(recordings={"XRP/ETH": recording}, speed=0, loop=False)
    await Collector(source, name="replay-ws", health_seconds=60).run()

    messages: list[dict[str, Any]] = []
    while not messages or messages[-1]["state"] != "stopped":
        message = await client.receive_json_from(timeout=5)
        assert (message["type"], message["name"], message["source"]) == ("collector", "replay-ws", "replay")
        messages.append(message)
    # Each message is a change from the one before (the first from no known state)
    assert [m["previous_state"] for m in messages] == [None] + [m["state"] for m in messages[:-1]]
    await client.disconnect()


class MinutesSource(Source):
    """Two trades in each of `count` minutes, then the end of the stream: the collector stores and
    publishes every closed minute at once when it stops (and the last, still open, as non-final)."""

    name = "minutes"
    exchange = "binance"

    def __init__(self, count: int) -> None:
        self.count = count

    async def stream(self, symbols: Mapping[str, int | None]) -> AsyncGenerator[SourceEvent, None]:
        start_ms = int(START.timestamp() * 1000)
        for minute in range(self.count):
            for second, trade_id in ((1, "a"), (30, "b")):
                at = start_ms + minute * MINUTE_MS + second * 1000
                yield TradeEvent("XRP/ETH", Trade(at, f"{minute}{trade_id}", 10.0 + minute, 1.0))


async def test_a_subscriber_gets_every_final_bar_of_a_multi_bar_flush_once_and_in_order(public, instrument):
    client = await connect()
    assert (await subscribe(client, instrument.pk))["type"] == "snapshot"

    # When the collector stores and publishes 40 minutes in one flush
    collector = Collector(MinutesSource(41), flush_bars=1000, flush_seconds=60, partial_per_second=0)
    stats = await collector.run()
    assert stats.finals_published == 41  # 40 closed minutes and the open one, stored as non-final

    # Then the client gets one frame per bar, each final bar once, in order, then the open bar
    frames = [await client.receive_json_from(timeout=5) for _ in range(41)]
    assert await client.receive_nothing(timeout=0.3)
    closes = [(frame["bar"]["close"], frame["bar"]["final"]) for frame in frames]
    assert closes == [(10.0 + minute, True) for minute in range(40)] + [(50.0, False)]
    assert all("indicators" in frame for frame in frames[:40])
    await client.disconnect()


async def test_a_client_that_does_not_read_gets_every_final_of_a_batch_and_only_the_newest_partial(public, instrument):
    reading, slow, fast = await slow_and_fast_clients(instrument)

    # When, while the slow client does not read, a partial of minute 0, a batch of finals of minutes
    # 0-4 and partials of minute 5 are published
    reading.clear()
    await apublish_bar(bar(instrument.pk, 0, 1.0, final=False))
    await sync_to_async(publish_bars)([bar(instrument.pk, minute, 10.0 + minute, final=True) for minute in range(5)])
    for i in range(3):
        await apublish_bar(bar(instrument.pk, 5, 20.0 + i, final=False))

    # Then the fast client got all nine meanwhile (so the slow one's have all been handed over too)
    fast_frames = [await fast.receive_json_from(timeout=5) for _ in range(9)]
    assert [f["bar"]["close"] for f in fast_frames] == [1.0, 10.0, 11.0, 12.0, 13.0, 14.0, 20.0, 21.0, 22.0]
    # And once the slow client reads again it gets the five finals in order and the newest partial only
    reading.set()
    frames = await receive_all(slow)
    assert [(f["bar"]["close"], f["bar"]["final"]) for f in frames] == [(10.0 + m, True) for m in range(5)] + [
        (22.0, False)
    ]
    for client in (slow, fast):
        await client.disconnect()


async def test_arbitrage_opportunities_reach_the_arbitrage_channel_only(public):
    listener, bystander = await connect(), await connect()
    await listener.send_json_to({"action": "subscribe", "channel": "arbitrage"})
    assert (await listener.receive_json_from(timeout=5))["type"] == "subscribed"
    opportunity = {"symbol": "BTC/USDT", "spread_bps": 12.5, "at": "2026-11-02T09:00:00Z"}

    await sync_to_async(publish_arbitrage_opportunity)(opportunity)

    assert await listener.receive_json_from(timeout=5) == {"type": "arbitrage", **opportunity}
    assert await bystander.receive_nothing(timeout=0.3)
    for client in (listener, bystander):
        await client.disconnect()


# --- auth -----------------------------------------------------------------------------------------


async def test_an_anonymous_connection_is_refused_unless_market_data_is_public(private):
    client = WebsocketCommunicator(application, "/ws/v1/market/", headers=HOST)
    await client.connect(timeout=10)
    frames, code = await closed_with(client)
    assert code == 4401
    assert frames[-1]["code"] == "unauthenticated"


async def test_a_session_or_an_access_token_lets_a_user_in(private, make_user, instrument):
    reader = await sync_to_async(make_user)("viewer")
    token = str(await sync_to_async(AccessToken.for_user)(reader))

    for client in (
        await connect(headers=[await sync_to_async(session_cookie)(reader)]),
        await connect(f"/ws/v1/market/?token={token}"),
    ):
        assert (await subscribe(client, instrument.pk))["type"] == "snapshot"
        await client.disconnect()


async def test_a_bad_token_is_refused_even_when_market_data_is_public(public):
    client = WebsocketCommunicator(application, "/ws/v1/market/?token=not-a-token", headers=HOST)
    await client.connect(timeout=10)
    assert (await closed_with(client))[1] == 4401


async def test_a_user_whose_role_does_not_allow_market_data_cannot_subscribe(private, make_user, instrument):
    nobody = await sync_to_async(make_user)()
    client = await connect(headers=[await sync_to_async(session_cookie)(nobody)])
    error = await subscribe(client, instrument.pk)
    assert (error["type"], error["code"]) == ("error", "forbidden")
    await client.send_json_to({"action": "subscribe", "channel": "collectors"})
    assert (await client.receive_json_from(timeout=5))["code"] == "forbidden"
    await client.disconnect()


# --- limits ---------------------------------------------------------------------------------------


async def test_subscriptions_beyond_the_limit_are_refused_with_an_error(public, settings, instrument):
    settings.WS_MAX_SUBSCRIPTIONS = 2
    client = await connect()
    assert (await subscribe(client, instrument.pk, "1m"))["type"] == "snapshot"
    assert (await subscribe(client, instrument.pk, "5m"))["type"] == "snapshot"
    refused = await subscribe(client, instrument.pk, "1h")
    assert (refused["type"], refused["code"]) == ("error", "too_many_subscriptions")
    await client.send_json_to({"action": "subscribe", "channel": "collectors"})
    assert (await client.receive_json_from(timeout=5))["code"] == "too_many_subscriptions"
    # the connection stays usable
    await client.send_json_to({"action": "ping"})
    assert await client.receive_json_from(timeout=5) == {"type": "pong"}
    await client.disconnect()


async def test_a_message_over_the_size_limit_is_refused_with_an_error(public, settings):
    settings.WS_MAX_MESSAGE_BYTES = 64
    client = await connect()
    await client.send_json_to({"action": "ping", "padding": "x" * 64})
    assert (await client.receive_json_from(timeout=5))["code"] == "message_too_large"
    await client.send_json_to({"action": "ping"})
    assert await client.receive_json_from(timeout=5) == {"type": "pong"}
    await client.disconnect()


async def test_messages_over_the_rate_are_dropped_with_one_error_and_sustained_abuse_closes(public, settings):
    settings.WS_MESSAGES_PER_SECOND = 0.001  # no refill within the test
    settings.WS_MESSAGE_BURST = 3
    settings.WS_CLOSE_AFTER_REFUSED = 5
    client = await connect()
    for _ in range(3):
        await client.send_json_to({"action": "ping"})
        assert await client.receive_json_from(timeout=5) == {"type": "pong"}

    for _ in range(4):  # refused 1..4: one error, no pongs
        await client.send_json_to({"action": "ping"})
    error = await client.receive_json_from(timeout=5)
    assert (error["type"], error["code"]) == ("error", "rate_limited")
    assert await client.receive_nothing(timeout=0.2)

    await client.send_json_to({"action": "ping"})  # refused 5: closed
    frames, code = await closed_with(client)
    assert code == 4429
    assert frames[-1]["code"] == "rate_limited"


# --- malformed input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "bad_json"),
        ("[1, 2]", "bad_message"),
        ('{"action": "dance"}', "unknown_action"),
        ('{"action": "subscribe", "instrument": "1"}', "bad_message"),
        ('{"action": "subscribe", "instrument": true}', "bad_message"),
        ('{"action": "subscribe", "instrument": 1, "timeframe": "2m"}', "bad_timeframe"),
        ('{"action": "subscribe", "instrument": 999999}', "unknown_instrument"),
        ('{"action": "subscribe", "channel": "gossip"}', "unknown_channel"),
    ],
)
async def test_a_malformed_message_gets_an_error_and_the_connection_stays_open(public, instrument, frame, code):
    client = await connect()
    await client.send_to(text_data=frame)
    error = await client.receive_json_from(timeout=5)
    assert (error["type"], error["code"]) == ("error", code)
    assert error["message"]
    await client.send_json_to({"action": "ping"})
    assert await client.receive_json_from(timeout=5) == {"type": "pong"}
    await client.disconnect()


async def test_a_binary_frame_gets_an_error(public):
    client = await connect()
    await client.send_to(bytes_data=b"\x00\x01")
    assert (await client.receive_json_from(timeout=5))["code"] == "bad_message"
    await client.disconnect()


# --- slow clients ---------------------------------------------------------------------------------


def with_client_reading(writable: asyncio.Event) -> Any:
    """The application as daphne serves it to a client whose socket stops being read: the transport
    signals `writable` cleared (cryptostock.websocket_transport) while the client does not read."""

    async def app(scope, receive, send):
        scope = {**scope, "extensions": {**(scope.get("extensions") or {}), WRITABLE_EXTENSION: writable}}
        return await application(scope, receive, send)

    return app


async def slow_and_fast_clients(instrument: Any) -> tuple[asyncio.Event, WebsocketCommunicator, WebsocketCommunicator]:
    """Two subscribers of the instrument; the first reads only while the event is set (it is)."""
    reading = asyncio.Event()
    reading.set()
    slow = await connect(app=with_client_reading(reading))
    fast = await connect()
    for client in (slow, fast):
        assert (await subscribe(client, instrument.pk))["type"] == "snapshot"
    return reading, slow, fast


async def receive_all(client: WebsocketCommunicator) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    while not await client.receive_nothing(timeout=0.3):
        frames.append(await client.receive_json_from())
    return frames


async def test_a_client_that_does_not_read_gets_only_the_newest_partial_and_every_final_without_slowing_others(
    public, instrument
):
    reading, slow, fast = await slow_and_fast_clients(instrument)

    # When the slow client stops reading while 10 partials of a bar, its final and 5 partials of
    # the next bar are published
    reading.clear()
    for i in range(10):
        await apublish_bar(bar(instrument.pk, 0, 1.0 + i, final=False))
    await sync_to_async(publish_bars)([bar(instrument.pk, 0, 20.0, final=True)])
    for i in range(5):
        await apublish_bar(bar(instrument.pk, 1, 30.0 + i, final=False))

    # Then the fast client got all 16 meanwhile
    fast_frames: list[dict[str, Any]] = []
    while len(fast_frames) < 16:
        fast_frames.append(await fast.receive_json_from(timeout=5))
    assert [f["bar"]["close"] for f in fast_frames] == [1.0 + i for i in range(10)] + [20.0] + [
        30.0 + i for i in range(5)
    ]
    assert await slow.receive_nothing(timeout=0.2)

    # And once the slow client reads again, it gets the final and the newest partial only
    reading.set()
    frames = await receive_all(slow)
    assert [(f["bar"]["close"], f["bar"]["final"]) for f in frames] == [(20.0, True), (34.0, False)]
    for client in (slow, fast):
        await client.disconnect()


async def test_a_client_that_never_reads_is_closed_once_its_queue_is_full(public, settings, instrument):
    settings.WS_MAX_QUEUED_FRAMES = 3
    reading = asyncio.Event()
    reading.set()
    slow = await connect(app=with_client_reading(reading))
    assert (await subscribe(slow, instrument.pk))["type"] == "snapshot"
    reading.clear()

    # Final bars are never dropped, so they pile up
    await sync_to_async(publish_bars)([bar(instrument.pk, minute, 1.0, final=True) for minute in range(5)])

    output = await slow.receive_output(timeout=5)
    assert output == {"type": "websocket.close", "code": 4408}


async def test_a_subscriber_gets_a_large_batch_sent_as_columns_as_one_frame_per_bar_in_order(public, instrument):
    client = await connect()
    assert (await subscribe(client, instrument.pk))["type"] == "snapshot"
    count = COLUMNS_MIN_BARS + 10
    rows = [bar(instrument.pk, minute, 10.0 + minute, final=True) for minute in range(count)]
    await sync_to_async(store_bars)(rows, publish=False)

    # When the batch is published: too many bars of the series for a frame item each
    messages = await sync_to_async(prepare_bar_messages)(rows)
    assert [("columns" in message) for message in messages] == [True]
    await sync_to_async(publish_bars)(rows)

    # Then the client gets one bar frame per bar, in order, as for items
    frames = [await client.receive_json_from(timeout=5) for _ in range(count)]
    assert await client.receive_nothing(timeout=0.3)
    assert [(f["type"], f["bar"]["close"], f["bar"]["final"]) for f in frames] == [
        ("bar", 10.0 + minute, True) for minute in range(count)
    ]
    assert all("indicators" in frame for frame in frames)
    await client.disconnect()

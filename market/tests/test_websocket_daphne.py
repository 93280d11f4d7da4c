"""Back-pressure through real daphne: a client whose socket stops being read is noticed by the server
(cryptostock.websocket_transport registers a Twisted producer) and from then on gets only the newest
partial bar of a series, never fewer final bars, while another client keeps up.

The other WebSocket tests drive the consumer with channels' WebsocketCommunicator, where the writable
signal is simulated; this one depends on daphne's real transport, which is what the hook reads."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from cryptostock.webserver import wait_until_serving
from market.barstore import BarRow
from market.services import apublish_bar, publish_bars

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("REDIS_URL", "")
START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
PARTIALS = 3000  # far more partial frames (about 450 KB) than the socket buffers and Twisted's 64 KB hold

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not REDIS_URL, reason="needs REDIS_URL: the server is another process"),
]


@pytest.fixture
def channel_prefix(settings) -> Iterator[str]:
    """A prefix of this test's own, for the server and for the publishing done here."""
    from channels.layers import channel_layers

    prefix = f"bp{uuid.uuid4().hex[:12]}"
    layers = json.loads(json.dumps(settings.CHANNEL_LAYERS))
    layers["default"]["CONFIG"]["prefix"] = prefix
    settings.CHANNEL_LAYERS = layers
    channel_layers.backends.clear()
    yield prefix
    channel_layers.backends.clear()


@pytest.fixture
def daphne_url(channel_prefix) -> Iterator[str]:
    db = connection.settings_dict
    database_url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    # The server's listening socket, made here with a small send buffer (accepted connections inherit
    # it), so that a stalled client fills the kernel's buffers within a few hundred frames and the rest
    # piles up in Twisted's, which is what makes it call the producer's pauseProducing.
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "CHANNEL_PREFIX": channel_prefix,
        "PUBLIC_MARKET_DATA": "1",
        "DEBUG": "0",
        "ALLOWED_HOSTS": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }
    command = [sys.executable, "-m", "daphne", "-v", "0", "--fd", str(listener.fileno())]
    server = subprocess.Popen(
        [*command, "cryptostock.asgi:application"], cwd=ROOT, env=env, pass_fds=(listener.fileno(),)
    )
    listener.close()
    try:
        wait_until_serving(f"http://127.0.0.1:{port}/health", server)
        yield f"ws://127.0.0.1:{port}/ws/v1/market/"
    finally:
        server.terminate()
        server.wait(timeout=20)


def bar(instrument_id: int, minute: int, close: float, *, final: bool) -> BarRow:
    opened = START + timedelta(minutes=minute)
    return BarRow(instrument_id, "1m", opened, close, close, close, close, 1.0, 1, close, final)


def subscribed(url: str, instrument_id: int) -> ClientConnection:
    client = ws_connect(url, compression=None, ping_interval=None, max_size=None, legacy=True)
    client.send(json.dumps({"action": "subscribe", "instrument": instrument_id, "timeframe": "1m"}))
    assert json.loads(client.recv(timeout=10))["type"] == "snapshot"
    return client


class StalledClient:
    """A WebSocket client that reads nothing from its socket until asked: the handshake and the
    subscription by hand (RFC 6455), a small receive buffer, then silence."""

    def __init__(self, url: str, instrument_id: int) -> None:
        host_port, path = url.removeprefix("ws://").split("/", 1)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(("127.0.0.1", int(host_port.split(":")[1])))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET /{path} HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.sock.recv(4096)
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101")
        self.send({"action": "subscribe", "instrument": instrument_id, "timeframe": "1m"})
        snapshot = self.next_frame(timeout=10)
        assert snapshot is not None
        assert snapshot["type"] == "snapshot"

    def send(self, message: dict[str, Any]) -> None:
        payload, mask = json.dumps(message).encode(), os.urandom(4)
        assert len(payload) < 126
        masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
        self.sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)

    def _read(self, count: int, timeout: float) -> bytes | None:
        self.sock.settimeout(timeout)
        while len(self.buffer) < count:
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                return None
            if not chunk:
                return None
            self.buffer += chunk
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def next_frame(self, timeout: float) -> dict[str, Any] | None:
        head = self._read(2, timeout)
        if head is None:
            return None
        length = head[1] & 0x7F
        if length == 126:
            length = int.from_bytes(self._read(2, timeout) or b"", "big")
        elif length == 127:
            length = int.from_bytes(self._read(8, timeout) or b"", "big")
        payload = self._read(length, timeout) or b""
        return json.loads(payload) if head[0] & 0x0F == 1 else {"type": f"opcode {head[0] & 0x0F}"}

    def frames_until_quiet(self, quiet: float = 1.0) -> list[dict[str, Any]]:
        frames = []
        while (frame := self.next_frame(quiet)) is not None:
            frames.append(frame)
        return frames


def frames_until_quiet(client: ClientConnection, quiet: float = 1.0) -> list[dict[str, Any]]:
    frames = []
    while True:
        try:
            frames.append(json.loads(client.recv(timeout=quiet)))
        except TimeoutError:
            return frames


def test_a_client_that_stops_reading_gets_the_newest_partial_and_every_final_while_another_keeps_up(
    daphne_url, instrument
):
    fast = subscribed(daphne_url, instrument.pk)
    slow = StalledClient(daphne_url, instrument.pk)
    fast_frames: list[dict[str, Any]] = []
    reader = threading.Thread(target=lambda: fast_frames.extend(frames_until_quiet(fast, quiet=5.0)))
    reader.start()  # the fast client reads all along

    async def publish() -> None:
        # Thousands of partial updates of minute 0, its final bar, then partials of minute 1.
        for i in range(PARTIALS):
            await apublish_bar(bar(instrument.pk, 0, 1.0 + i / 1000, final=False))
            if i % 50 == 49:  # paced, so that the server's channel (capacity 1,000) never overflows
                await asyncio.sleep(0.02)
        await asyncio.get_running_loop().run_in_executor(None, publish_bars, [bar(instrument.pk, 0, 9.0, final=True)])
        for i in range(3):
            await apublish_bar(bar(instrument.pk, 1, 10.0 + i, final=False))

    async_to_sync(publish)()
    reader.join(timeout=60)
    slow_frames = slow.frames_until_quiet()  # it reads again only now

    for frames in (fast_frames, slow_frames):
        finals = [f["bar"]["close"] for f in frames if f.get("type") == "bar" and f["bar"]["final"]]
        assert finals == [9.0]  # the final bar, exactly once
        last = frames[-1]
        assert (last["bar"]["time"], last["bar"]["close"], last["bar"]["final"]) == (
            int((START + timedelta(minutes=1)).timestamp()),
            12.0,
            False,
        )
    slow_partials = sum(1 for f in slow_frames if f.get("type") == "bar" and not f["bar"]["final"])
    fast_partials = sum(1 for f in fast_frames if f.get("type") == "bar" and not f["bar"]["final"])
    # The server noticed the stalled socket: what it held back for the slow client was coalesced to
    # the newest partial, so it got far fewer than were published (the reading one got them all).
    assert fast_partials == PARTIALS + 3
    assert slow_partials < PARTIALS / 2
    fast.close()
    slow.sock.close()

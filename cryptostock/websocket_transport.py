"""Tells a WebSocket consumer when its client stops reading (daphne only).

ASGI has no back-pressure for `websocket.send`: daphne writes every frame into Twisted's transport
buffer at once, so a client that does not read makes that buffer grow without anyone noticing.
Twisted does tell a registered streaming producer when the buffer passes its high-water mark
(`pauseProducing`) and when it drained (`resumeProducing`). This middleware registers one per
connection and hands the consumer an `asyncio.Event` that is set while the client keeps up, as the
scope extension `cryptostock.writable`, and a way to write ready-made frames,
`cryptostock.write_frame`. Consumers wait on the event before each frame, so frames for a slow
client stay in its own outbox, where stale partial bars are coalesced (market.live_outbox).

Under any other server (tests' WebsocketCommunicator, uvicorn) the extension is simply absent.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

log = logging.getLogger(__name__)

WRITABLE_EXTENSION = "cryptostock.writable"
WRITE_FRAME_EXTENSION = "cryptostock.write_frame"


@implementer(IPushProducer)
class TransportGate:
    """The transport's producer: tells the consumer whether its client keeps up, and passes each
    signal on to the producer it took the place of (daphne's HTTP channel, which stops reading the
    socket while the client does not read, as before)."""

    def __init__(self, replaced: Any = None) -> None:
        self.writable = asyncio.Event()
        self.writable.set()
        self.replaced = replaced

    def pauseProducing(self) -> None:  # Twisted names
        self.writable.clear()
        if self.replaced is not None:
            self.replaced.pauseProducing()

    def resumeProducing(self) -> None:
        self.writable.set()
        if self.replaced is not None:
            self.replaced.resumeProducing()

    def stopProducing(self) -> None:  # the connection is gone: nobody should wait
        self.writable.set()
        if self.replaced is not None:
            self.replaced.stopProducing()


def register_gate(protocol: Any) -> TransportGate:
    """Make a gate the producer of the connection's transport.

    The HTTP channel that received the upgrade request registered itself as the transport's producer
    and stays registered after the upgrade; a transport takes one producer, so it is unregistered
    here and chained behind the gate (without this, registering failed on every connection and no
    WebSocket under daphne had back-pressure)."""
    transport = protocol.transport
    replaced = transport.producer if getattr(transport, "streamingProducer", False) else None
    if transport.producer is not None:
        transport.unregisterProducer()
    gate = TransportGate(replaced)
    transport.registerProducer(gate, True)
    return gate


def daphne_protocol(send: Any) -> Any | None:
    """daphne passes `partial(server.handle_reply, protocol)` as `send`."""
    if isinstance(send, functools.partial) and send.args and hasattr(send.args[0], "registerProducer"):
        return send.args[0]
    return None


def frame_writer(protocol: Any) -> Any:
    """Writes a ready-made WebSocket frame (market.live_outbox.text_frame) to the connection.

    Why: a broadcast to 1,000 clients through `websocket.send` costs 1,000 trips through ASGI, daphne
    and autobahn's framing of the same text. Server frames are unmasked, so every client of a
    broadcast gets the same bytes: they are framed once and written here with no await. Frames are
    dropped once the connection is no longer open (closing or closed), as daphne does.
    """
    open_state = protocol.STATE_OPEN

    def write(frame: bytes) -> None:
        if protocol.state == open_state and protocol.transport is not None:
            protocol.transport.write(frame)

    return write


def with_transport_backpressure(application: Any) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> Any:
        protocol = daphne_protocol(send) if scope["type"] == "websocket" else None
        if protocol is not None:
            try:
                gate = register_gate(protocol)
            except Exception:  # the transport is gone, or is not one Twisted's producers work with
                log.warning("no back-pressure for this WebSocket", exc_info=True)
            else:
                extensions = {
                    **(scope.get("extensions") or {}),
                    WRITABLE_EXTENSION: gate.writable,
                    WRITE_FRAME_EXTENSION: frame_writer(protocol),
                }
                scope = {**scope, "extensions": extensions}
        return await application(scope, receive, send)

    return app

"""daphne with HTTP flow control: a streamed response waits for a slow client instead of piling up.

daphne hands each `http.response.body` piece to Twisted's transport at once and lets the application
send the next: a client that reads slower than the application writes (a big export over a slow
link) makes the process hold everything not yet sent, 223 MB within three seconds for a million-bar
CSV read at 2 MB/s. Twisted has the remedy built in: a push producer registered on the request is
paused when the connection's send buffer fills and resumed when it drains. `FlowControlledServer`
registers one for each response that comes in several pieces and makes the application's `send` of
the next piece wait while it is paused, so a streamed response holds about two pieces plus the
socket's buffers, as under uvicorn, and the next piece is made while the last one is sent.
Responses sent in one piece (nearly all) are untouched.

`python -m cryptostock.daphne_server <daphne's options>` is daphne's command line with this server;
`cryptostock.webserver` starts its workers that way and `manage.py serve` uses the class directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import Any

from daphne.cli import CommandLineInterface
from daphne.server import Server

# How often a paused response checks that its client is still there (a producer that is never
# resumed must not keep the application waiting after the connection is gone).
DISCONNECT_CHECK_SECONDS = 1.0


class ResponseDrain:
    """A Twisted push producer for one response: paused while the connection's send buffer is full."""

    def __init__(self) -> None:
        self.resumed = asyncio.Event()
        self.resumed.set()

    def pauseProducing(self) -> None:
        self.resumed.clear()

    def resumeProducing(self) -> None:
        self.resumed.set()

    def stopProducing(self) -> None:
        self.resumed.set()


class FlowControlledServer(Server):
    """daphne's server, whose `send` of a response body piece waits until the client has taken the
    piece before it (a response in one piece does not wait at all)."""

    async def handle_reply(self, protocol: Any, message: dict[str, Any]) -> None:
        if message.get("type") == "http.response.body":
            # Each piece waits until the one before it has left the process: the application makes
            # the next piece while this one is on its way, and no more than about two are held.
            await self._wait_for_drain(protocol)
            if message.get("more_body", False):
                self._drain(protocol)  # registered before the first piece is written
            else:
                self._release(protocol)  # before daphne finishes the request with this last piece
        await super().handle_reply(protocol, message)

    async def _wait_for_drain(self, protocol: Any) -> None:
        state = self.connections.get(protocol)
        drain: ResponseDrain | None = None if state is None else state.get("drain")
        while drain is not None and not drain.resumed.is_set() and self._connected(protocol):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(drain.resumed.wait(), DISCONNECT_CHECK_SECONDS)

    def _drain(self, protocol: Any) -> ResponseDrain | None:
        """The response's producer, registered with its first piece; None if it cannot have one."""
        state = self.connections.get(protocol)
        if state is None or not hasattr(protocol, "registerProducer"):
            return None
        drain: ResponseDrain | None = state.get("drain")
        if drain is None:
            drain = ResponseDrain()
            try:
                protocol.registerProducer(drain, True)
            except (RuntimeError, ValueError):  # a producer left by an earlier response: go without
                return None
            state["drain"] = drain
            if getattr(protocol.channel, "_waitingForTransport", False):
                drain.pauseProducing()  # the buffer was full already: Twisted will resume us
        return drain

    def _release(self, protocol: Any) -> None:
        state = self.connections.get(protocol)
        if state is not None and state.pop("drain", None) is not None:
            protocol.unregisterProducer()

    def _connected(self, protocol: Any) -> bool:
        state = self.connections.get(protocol)
        return state is not None and not state.get("disconnected")


class FlowControlledCommandLine(CommandLineInterface):
    server_class = FlowControlledServer


def main(argv: list[str] | None = None) -> None:
    FlowControlledCommandLine().run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()

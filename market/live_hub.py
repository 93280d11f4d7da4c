"""One fan-out point per process for broadcasts (bars, collectors, arbitrage) to local WebSockets.

Why: with a channel-layer group membership per connection, a bar to 1,000 clients costs 1,000
deliveries through the layer (a queue, a task switch and a dispatch each) plus a JSON encoding per
client. Here the process joins each group once, on its own channel; every broadcast arrives once
and its pre-encoded text is put straight into the outbox of each local subscriber, with no await
per subscriber. Several daphne processes each have their hub, so a broadcast still reaches every
process through channels-redis.

The hub exists while at least one connection in this process (and event loop) subscribes to
something, and leaves its groups when the last one goes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

log = logging.getLogger(__name__)

# channels-redis forgets group members after `group_expiry` (a day): a long-lived hub re-joins.
REJOIN_SECONDS = 3600


class Subscriber(Protocol):
    def deliver(self, message: dict[str, Any]) -> None: ...


class LiveHub:
    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.channel_name: str | None = None
        self._members: dict[str, set[Subscriber]] = {}
        self._lock = asyncio.Lock()
        self._reader: asyncio.Task[None] | None = None
        self._joined_at = 0.0

    async def join(self, group: str, subscriber: Subscriber) -> None:
        async with self._lock:
            if self.channel_name is None:
                self.channel_name = await self.layer.new_channel()
                self._reader = asyncio.get_running_loop().create_task(self._read_forever())
                self._joined_at = time.monotonic()
            members = self._members.setdefault(group, set())
            if not members:
                await self.layer.group_add(group, self.channel_name)
            members.add(subscriber)

    async def leave(self, group: str, subscriber: Subscriber) -> None:
        async with self._lock:
            members = self._members.get(group)
            if members is None or subscriber not in members:
                return
            members.discard(subscriber)
            if not members:
                del self._members[group]
                await self.layer.group_discard(group, self.channel_name)
            if not self._members:
                await self._close()

    async def _close(self) -> None:
        reader, self._reader, self.channel_name = self._reader, None, None
        _hubs.pop(asyncio.get_running_loop(), None)
        if reader is not None:
            reader.cancel()

    async def _read_forever(self) -> None:
        channel = self.channel_name
        assert channel is not None
        while True:
            try:
                message = await self.layer.receive(channel)
                self.fan_out(message)
                if time.monotonic() - self._joined_at > REJOIN_SECONDS:
                    await self._rejoin(channel)
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis unreachable: keep trying, or this process's clients go quiet for good
                log.exception("the live hub could not read from the channel layer; retrying in 1 s")
                await asyncio.sleep(1)

    def fan_out(self, message: dict[str, Any]) -> None:
        for subscriber in tuple(self._members.get(message.get("group", ""), ())):
            try:
                subscriber.deliver(message)
            except Exception:  # one broken connection must not keep the others from their bars
                log.exception("could not deliver a broadcast to a WebSocket")

    async def _rejoin(self, channel: str) -> None:
        self._joined_at = time.monotonic()
        for group in tuple(self._members):
            await self.layer.group_add(group, channel)


_hubs: dict[asyncio.AbstractEventLoop, LiveHub] = {}


def hub_for(layer: Any) -> LiveHub:
    """This event loop's hub (one per process in daphne; tests run a loop per test)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None or hub.layer is not layer:
        hub = _hubs[loop] = LiveHub(layer)
    return hub

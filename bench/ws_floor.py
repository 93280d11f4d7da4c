"""The floor for bench_websocket: a bare `websockets` server fanning Redis pub/sub out to clients.

`python -m bench.ws_floor PORT REDIS_URL CHANNEL_PREFIX`. It speaks just enough of the product's
protocol for bench.ws_clients (subscribe -> an empty snapshot) and forwards each message published
on `<prefix>.<instrument>` to the clients subscribed to that instrument with `websockets.broadcast`
(the text as published, no decoding, no per-client await). Nothing the product does is cheaper, so
this is what a WebSocket fan-out costs in Python on this machine.
"""

from __future__ import annotations

import asyncio
import sys

import orjson
import redis.asyncio as redis
import websockets
from websockets.asyncio.server import ServerConnection, broadcast, serve

subscribers: dict[int, set[ServerConnection]] = {}


async def handle(connection: ServerConnection) -> None:
    joined: list[int] = []
    try:
        async for text in connection:
            message = orjson.loads(text)
            if message.get("action") == "subscribe":
                instrument = int(message["instrument"])
                subscribers.setdefault(instrument, set()).add(connection)
                joined.append(instrument)
                snapshot = {"type": "snapshot", "instrument": instrument, "timeframe": "1m", "bars": []}
                await connection.send(orjson.dumps(snapshot).decode())
    except websockets.ConnectionClosed:
        pass
    finally:
        for instrument in joined:
            subscribers.get(instrument, set()).discard(connection)


async def relay(url: str, prefix: str) -> None:
    client = redis.from_url(url)
    pubsub = client.pubsub()
    await pubsub.psubscribe(f"{prefix}.*")
    async for message in pubsub.listen():
        if message["type"] != "pmessage":
            continue
        suffix = message["channel"].rsplit(b".", 1)[1]
        if suffix.isdigit():  # not the publisher's warm-up
            broadcast(subscribers.get(int(suffix), ()), message["data"].decode())


async def main(port: int, url: str, prefix: str) -> None:
    async with serve(handle, "127.0.0.1", port, max_size=2**16, ping_interval=None):
        print("ready", flush=True)
        await relay(url, prefix)


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3]))

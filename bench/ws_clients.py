"""Many WebSocket clients in one process, for bench_websocket: `python -m bench.ws_clients URL N IDS`.

Opens N connections to URL (asyncio + `websockets`, uvloop when available), client i subscribing to
the 1m bars of instrument IDS[i % len(IDS)], and prints `ready <connected>` once every snapshot is
in. From then on it notes the wall-clock time each final bar arrives. On `report` (stdin) it prints
one JSON line `[[instrument, bar_time, received_at], ...]` and forgets them; on `quit` it exits.

A separate process from the server and the publisher, so that the clients' own work is not charged
to the server's core (the machine has two).
"""

from __future__ import annotations

import asyncio
import sys
import time

import orjson
import websockets

CONNECT_CONCURRENCY = 50
CONNECT_ATTEMPTS = 5


class Receipts:
    def __init__(self) -> None:
        self.rows: list[tuple[int, int, float]] = []
        self.partials = 0


async def client(
    url: str, instrument: int, receipts: Receipts, ready: asyncio.Future[bool], gate: asyncio.Semaphore
) -> None:
    for attempt in range(CONNECT_ATTEMPTS):
        try:
            async with gate:
                connection = await subscribed(url, instrument)
            break
        except Exception as error:  # a loaded server may drop a handshake: retry, as browsers do
            if attempt == CONNECT_ATTEMPTS - 1:
                print(f"a client could not subscribe: {error!r}", file=sys.stderr, flush=True)
                ready.set_result(False)
                return
            await asyncio.sleep(1 + attempt)
    ready.set_result(True)
    async for text in connection:
        if '"final":true' in text:
            message = orjson.loads(text)
            receipts.rows.append((message["instrument"], message["bar"]["time"], time.time()))
        else:
            receipts.partials += 1


async def subscribed(url: str, instrument: int) -> websockets.ClientConnection:
    connection = await websockets.connect(url, max_size=None, ping_interval=None, open_timeout=60)
    subscribe = {"action": "subscribe", "instrument": instrument, "timeframe": "1m"}
    await connection.send(orjson.dumps(subscribe).decode())
    while (answer := orjson.loads(await connection.recv()))["type"] != "snapshot":
        if answer["type"] == "error":
            raise RuntimeError(answer["message"])
    return connection


async def main(url: str, count: int, instruments: list[int]) -> None:
    receipts = Receipts()
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    loop = asyncio.get_running_loop()
    ready = [loop.create_future() for _ in range(count)]
    tasks = [
        asyncio.create_task(client(url, instruments[i % len(instruments)], receipts, ready[i], gate))
        for i in range(count)
    ]
    await asyncio.wait(ready, timeout=600)
    connected = sum(future.done() and future.result() for future in ready)
    print(f"ready {connected}", flush=True)
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
        if line == "report":
            rows, receipts.rows = receipts.rows, []
            sys.stdout.write(orjson.dumps(rows).decode() + "\n")
            sys.stdout.flush()
        elif line in ("quit", ""):
            break
    for task in tasks:
        task.cancel()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - plain asyncio then
        pass
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), [int(i) for i in sys.argv[3].split(",")]))

"""The floor of bench_api: the bars query as a raw ASGI app, no framework, no auth, no middleware.

`uvicorn bench.api_floor:app --workers 2`, with FLOOR_DATABASE_URL. It runs the same SQL as the
API's fast path (market.api.bars) over a small pool of async psycopg connections per worker and
renders the same JSON with orjson: the least any Python server can do for this response.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any
from urllib.parse import parse_qs

import orjson
import psycopg

POOL_SIZE = 4
FIELDS = ("time", "open", "high", "low", "close", "volume", "trades", "vwap", "final")
SQL = (
    "SELECT CAST(EXTRACT(EPOCH FROM time) AS bigint), open, high, low, close, volume, trades, vwap, final "
    "FROM market_bar WHERE instrument_id = %s AND timeframe = %s ORDER BY time DESC LIMIT %s"
)

_pool: asyncio.Queue[psycopg.AsyncConnection[Any]] = asyncio.Queue()


async def _open_pool() -> None:
    for _ in range(POOL_SIZE):
        await _pool.put(await psycopg.AsyncConnection.connect(os.environ["FLOOR_DATABASE_URL"], autocommit=True))


async def _bars(instrument: int, timeframe: str, limit: int) -> bytes:
    connection = await _pool.get()
    try:
        cursor = await connection.execute(SQL, (instrument, timeframe, limit))
        rows = await cursor.fetchall()
    finally:
        _pool.put_nowait(connection)
    rows.reverse()
    bars = [dict(zip(FIELDS, row, strict=True)) for row in rows]
    return orjson.dumps({"instrument": instrument, "timeframe": timeframe, "bars": bars})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await _open_pool()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    query = parse_qs(scope["query_string"].decode())
    body = await _bars(int(query["instrument"][0]), query.get("timeframe", ["1m"])[0], int(query["limit"][0]))
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})

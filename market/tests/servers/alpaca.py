"""A local Alpaca market-data service: the websocket stream (msgpack, or JSON for clients that do not
ask for msgpack) and the REST trades endpoint with `next_page_token` pagination, replaying the trade
and bar bodies recorded from Alpaca's API in alpaca-py's test suite.

Protocol (https://docs.alpaca.markets/docs/streaming-market-data): the server greets with
`[{"T": "success", "msg": "connected"}]`, expects `{"action": "auth", "key", "secret"}` within the
connection, answers `[{"T": "success", "msg": "authenticated"}]` (or an error 402 and closes), then
`{"action": "subscribe", "trades": [...], "bars": [...]}` is answered by a `subscription` message and
data follows as arrays of `{"T": "t" | "b", "S": symbol, ...}`. Timestamps are msgpack timestamps,
or RFC 3339 text in JSON. Like the local Binance, the market moves as the client reads, and faults
are scripted per connection.
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import pandas as pd
import websockets
from aiohttp import web
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from market.sources.alpaca import timestamp_ms
from market.tests.servers.binance import Fault
from market.tests.servers.http import ReplayServer

STOCK_TRADES = [
    "stock_data__get_trades.json",
    "stock_data__multisymbol_get_trades.json",
    "stock_data__get_latrade.json",
    "stock_data__get_multisymbol_latrade.json",
]
STOCK_BARS = ["stock_data__stock_labar.json", "stock_data__multi_stock_labar.json"]
CRYPTO_TRADES = ["crypto_data__get_crypto_trades.json", "crypto_data__get_crypto_latrade.json"]
CRYPTO_BARS = ["crypto_data__crypto_labar.json"]
KEY, SECRET = "test-key", "test-secret"


@dataclass(frozen=True)
class Item:
    kind: str  # "t" or "b"
    symbol: str
    body: dict[str, Any]  # as recorded (REST field names, which the stream shares)

    @property
    def time_ms(self) -> int:
        # A minute bar is published when its minute is over.
        return timestamp_ms(self.body["t"]) + (60_000 if self.kind == "b" else 0)


def recorded_items(directory: Path, trade_files: list[str], bar_files: list[str]) -> list[Item]:
    """Every recorded trade and bar body, in time order (duplicates across files kept, as recorded)."""
    items = []
    for kind, files in (("t", trade_files), ("b", bar_files)):
        for name in files:
            body = json.loads((directory / name).read_text())
            for symbol, value in body["trades" if kind == "t" else "bars"].items():
                for entry in value if isinstance(value, list) else [value]:
                    items.append(Item(kind, symbol, entry))
    return sorted(items, key=lambda item: item.time_ms)


def to_wire(item: Item, *, msgpack_mode: bool) -> dict[str, Any]:
    message = {"T": item.kind, "S": item.symbol, **item.body}
    if msgpack_mode:
        nanos = timestamp_ms(item.body["t"]) * 1_000_000 + _sub_millisecond_nanos(item.body["t"])
        message["t"] = msgpack.Timestamp.from_unix_nano(nanos)
    return message


def _sub_millisecond_nanos(text: str) -> int:
    fraction = text.rstrip("Z").partition(".")[2]
    return int((fraction + "000000000")[3:9]) if fraction else 0


class AlpacaServer(ReplayServer):
    ws_path = "/v2/iex"

    def __init__(
        self,
        items: list[Item],
        *,
        faults: dict[int, list[Fault]] | None = None,
        refuse: dict[int, int] | None = None,
        rest_faults: list[int] | None = None,
        page_size: int = 2,
        pace: float | None = None,
    ) -> None:
        self.items = items
        self.faults = faults or {}
        self.refuse = refuse or {}
        self.rest_faults = list(rest_faults or [])
        self.page_size = page_size
        self.pace = pace  # messages a second at most; None: as fast as the client reads
        self.authenticated = 0
        self.subscriptions: list[dict[str, Any]] = []
        self.sent: list[Item] = []
        self.encodings: list[str] = []
        super().__init__()

    def _replay_length(self) -> int:
        return len(self.items)

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        self.attempts += 1
        status = self.refuse.get(self.attempts)
        return connection.respond(status, "refused by the test server\n") if status else None

    async def _handle(self, ws: ServerConnection) -> None:
        self.connections += 1
        number = self.connections
        assert ws.request is not None
        packed = ws.request.headers.get("Content-Type") == "application/msgpack"
        self.encodings.append("msgpack" if packed else "json")

        async def send(messages: list[dict[str, Any]]) -> None:
            await ws.send(msgpack.packb(messages) if packed else json.dumps(messages, default=str))

        def decode(raw: str | bytes) -> dict[str, Any]:
            return msgpack.unpackb(raw) if isinstance(raw, bytes) else json.loads(raw)

        try:
            await send([{"T": "success", "msg": "connected"}])
            auth = decode(await ws.recv())
            if auth.get("action") != "auth" or (auth.get("key"), auth.get("secret")) != (KEY, SECRET):
                await send([{"T": "error", "code": 402, "msg": "auth failed"}])
                return
            self.authenticated += 1
            await send([{"T": "success", "msg": "authenticated"}])
            subscribed: dict[str, set[str]] = {"trades": set(), "bars": set()}
            reader = asyncio.create_task(self._read(ws, decode, send, subscribed))
            try:
                await self._stream(ws, send, subscribed, sorted(self.faults.get(number, []), key=lambda f: f.after))
            finally:
                reader.cancel()
        except websockets.ConnectionClosed:
            pass

    async def _read(self, ws, decode, send, subscribed) -> None:
        async for raw in ws:
            request = decode(raw)
            self.subscriptions.append(request)
            for channel in ("trades", "bars"):
                symbols = set(request.get(channel, []))
                if request.get("action") == "subscribe":
                    subscribed[channel] |= symbols
                elif request.get("action") == "unsubscribe":
                    subscribed[channel] -= symbols
            await send(
                [
                    {
                        "T": "subscription",
                        "trades": sorted(subscribed["trades"]),
                        "quotes": [],
                        "bars": sorted(subscribed["bars"]),
                    }
                ]
            )
            self._moved.set()

    async def _stream(self, ws, send, subscribed, faults: list[Fault]) -> None:
        while not any(subscribed.values()):
            await self._wait_moved(ws)
        position = self.cursor
        sent_here = 0
        packed = self.encodings[-1] == "msgpack"
        while True:
            while faults and sent_here >= faults[0].after:
                fault = faults.pop(0)
                if fault.kind == "garbage":
                    for payload in fault.payloads:
                        await ws.send(payload)
                    continue
                self.advance(fault.skip)
                if fault.kind == "drop":
                    await asyncio.sleep(0.05)  # what was sent has reached the client: then the line dies
                    ws.transport.abort()
                    return
                await ws.wait_closed()
                return
            position = max(position, self.cursor)
            if position >= len(self.items):
                await self._wait_moved(ws)
                continue
            item = self.items[position]
            position += 1
            self.cursor = max(self.cursor, position)
            if item.symbol in subscribed["trades" if item.kind == "t" else "bars"]:
                await send([to_wire(item, msgpack_mode=packed)])
                self.sent.append(item)
                sent_here += 1
                if self.pace is not None:
                    await asyncio.sleep(1 / self.pace)

    async def _wait_moved(self, ws: ServerConnection) -> None:
        self._moved.clear()
        moved = asyncio.ensure_future(self._moved.wait())
        closed = asyncio.ensure_future(ws.wait_closed())
        try:
            await asyncio.wait([moved, closed], return_when=asyncio.FIRST_COMPLETED)
        finally:
            moved.cancel()
            closed.cancel()
        if closed.done() and not closed.cancelled():
            raise websockets.ConnectionClosedOK(None, None)

    # --- REST: /v2/stocks/trades and /v1beta3/crypto/us/trades, paginated ---------------------

    def _rest_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v2/stocks/trades", self._trades)
        app.router.add_get("/v1beta3/crypto/us/trades", self._trades)
        return app

    async def _trades(self, request: web.Request) -> web.Response:
        self.rest_requests.append(str(request.rel_url))
        if self.rest_faults:
            return web.json_response({"message": "test server fault"}, status=self.rest_faults.pop(0))
        if request.path.startswith("/v2/") and (
            request.headers.get("APCA-API-KEY-ID"),
            request.headers.get("APCA-API-SECRET-KEY"),
        ) != (KEY, SECRET):
            return web.json_response({"message": "forbidden"}, status=403)
        symbols = request.query["symbols"].split(",")
        start = int(pd.Timestamp(request.query["start"]).value // 1_000_000) if "start" in request.query else 0
        happened = [
            item
            for item in self.items[: self.cursor]
            if item.kind == "t" and item.symbol in symbols and item.time_ms >= start
        ]
        offset = int(base64.b64decode(request.query["page_token"])) if request.query.get("page_token") else 0
        limit = min(int(request.query.get("limit", 1000)), self.page_size)
        page = happened[offset : offset + limit]
        trades: dict[str, list[dict[str, Any]]] = {}
        for item in page:
            trades.setdefault(item.symbol, []).append(item.body)
        more = offset + limit < len(happened)
        token = base64.b64encode(str(offset + limit).encode()).decode() if more else None
        return web.json_response({"trades": trades, "next_page_token": token})

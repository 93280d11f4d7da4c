"""A local Binance: the combined websocket stream and the REST endpoints the adapter uses, replaying
recorded real messages, with scripted faults.

The market has a clock, `cursor`: the messages before it have happened. A client that connects
receives what happens from then on (like the real exchange: nothing is replayed from the past),
and REST serves what has happened. The market moves only as fast as the connected client reads
(at most `pace` messages a second), so tests are deterministic; `skip` in a fault, and
`skip_on_disconnect`, make messages happen while the client is away: they reach it only through
REST, as they would after a real disconnect. Faults are scripted per connection number (1 = the
first connection); `refuse` answers connection attempts with an HTTP error instead.

`rest_prefix` is the REST path of the market served: `/api/v3` (spot) or `/fapi/v1` (USDⓈ-M
futures, which also serves `/fapi/v1/klines` from the recorded kline messages); a client asking the
other market's paths gets 404, as it would from the real hosts.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import websockets
from aiohttp import web
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from market.bars import MINUTE_MS
from market.sources.base import SourceEvent
from market.sources.binance import BinanceParser
from market.sources.replay import read_cryptofeed
from market.tests.servers.http import ReplayServer


@dataclass(frozen=True)
class Message:
    stream: str  # e.g. xrpeth@aggTrade
    symbol: str  # exchange symbol, XRPETH
    kind: str  # aggTrade or kline
    text: str  # the message as sent, verbatim
    rest_row: dict[str, Any] | None = None  # the same trade as /api/v3/aggTrades returns it


@dataclass
class Fault:
    """`drop`: abort the TCP connection after `after` messages; `stall`: stop sending (stay connected);
    `garbage`: send `payloads` after `after` messages and go on. `skip`: messages that happen while the
    client is away (drop, stall) and reach it only through REST."""

    kind: str
    after: int
    skip: int = 0
    payloads: list[str | bytes] = field(default_factory=list)


def messages_from_cryptofeed(path: Path) -> list[Message]:
    """The aggTrade and kline messages of a cryptofeed recording, verbatim, in recorded order."""
    _, recorded = read_cryptofeed(path)
    messages = []
    for item in recorded:
        message = json.loads(item.raw)
        data = message.get("data", {})
        kind = data.get("e")
        if kind not in ("aggTrade", "kline"):
            continue
        rest_row = {key: data[key] for key in ("a", "p", "q", "f", "l", "T", "m")} if kind == "aggTrade" else None
        if rest_row is not None:
            rest_row["M"] = data.get("M", True)
        messages.append(Message(message["stream"], data["s"], kind, item.raw, rest_row))
    return messages


def messages_from_ccxt_trades(path: Path, symbol: str, count: int | None = None) -> list[Message]:
    """Binance's own aggTrade payloads (the `info` of freqtrade's raw ccxt trades) as stream messages,
    in time order, with the kline_1m close message Binance sends after each minute that had trades."""
    with gzip.open(path, "rt") as handle:
        rows = [trade["info"] for trade in json.load(handle)][:count]
    lower = symbol.lower()
    messages: list[Message] = []
    minute_rows: list[dict[str, Any]] = []
    for row in rows:
        minute = row["T"] - row["T"] % MINUTE_MS
        if minute_rows and minute != minute_rows[0]["T"] - minute_rows[0]["T"] % MINUTE_MS:
            messages.append(kline_close(symbol, minute_rows))
            minute_rows = []
        minute_rows.append(row)
        data = {"e": "aggTrade", "E": row["T"], "s": symbol, **row}
        text = json.dumps({"stream": f"{lower}@aggTrade", "data": data}, separators=(",", ":"))
        messages.append(Message(f"{lower}@aggTrade", symbol, "aggTrade", text, row))
    if minute_rows:
        messages.append(kline_close(symbol, minute_rows))
    return messages


def kline_close(symbol: str, rows: list[dict[str, Any]]) -> Message:
    """The closing kline_1m of a minute, computed the way Binance does (exact decimal sums)."""
    minute = rows[0]["T"] - rows[0]["T"] % MINUTE_MS
    prices = [Decimal(row["p"]) for row in rows]
    volume = sum((Decimal(row["q"]) for row in rows), Decimal(0))
    quote = sum((Decimal(row["p"]) * Decimal(row["q"]) for row in rows), Decimal(0))
    kline = {
        "t": minute,
        "T": minute + MINUTE_MS - 1,
        "s": symbol,
        "i": "1m",
        "f": rows[0]["f"],
        "L": rows[-1]["l"],
        "o": rows[0]["p"],
        "c": rows[-1]["p"],
        "h": str(max(prices)),
        "l": str(min(prices)),
        "v": str(volume),
        "n": rows[-1]["l"] - rows[0]["f"] + 1,
        "x": True,
        "q": str(quote),
        "V": "0",
        "Q": "0",
        "B": "0",
    }
    # Binance sends the closing kline a few hundred milliseconds after the minute ends.
    data = {"e": "kline", "E": minute + MINUTE_MS + 1000, "s": symbol, "k": kline}
    stream = f"{symbol.lower()}@kline_1m"
    return Message(stream, symbol, "kline", json.dumps({"stream": stream, "data": data}, separators=(",", ":")))


class BinanceServer(ReplayServer):
    def __init__(
        self,
        messages: list[Message],
        *,
        faults: dict[int, list[Fault]] | None = None,
        refuse: dict[int, tuple[int, float | None]] | None = None,
        rest_faults: list[int] | None = None,
        pace: float | None = None,
        skip_on_disconnect: int = 0,
        hold_at: int | None = None,
        rest_prefix: str = "/api/v3",
    ) -> None:
        self.messages = messages
        self.rest_prefix = rest_prefix
        self.faults = faults or {}
        self.refuse = refuse or {}  # connection attempt -> (HTTP status, Retry-After)
        self.rest_faults = list(rest_faults or [])
        self.pace = pace  # messages per second sent at most; None: as fast as the client reads
        self.skip_on_disconnect = skip_on_disconnect
        self.hold_at = hold_at  # the market stops before this message until `release()`
        self.sent: Counter[str] = Counter()  # messages sent, by kind
        self.sent_by_stream: Counter[str] = Counter()
        self.subscribe_requests: list[dict[str, Any]] = []
        self.garbage_sent = 0
        super().__init__()

    def _replay_length(self) -> int:
        return len(self.messages)

    # --- websocket -------------------------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        self.attempts += 1
        refused = self.refuse.get(self.attempts)
        if refused is not None:
            status, retry_after = refused
            response = connection.respond(status, "refused by the test server\n")
            if retry_after is not None:
                response.headers["Retry-After"] = str(retry_after)
            return response
        if urlsplit(request.path).path != "/stream":
            return connection.respond(404, "unknown path\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        self.connections += 1
        number = self.connections
        assert ws.request is not None
        query = parse_qs(urlsplit(ws.request.path).query)
        streams = set(query.get("streams", [""])[0].split("/")) - {""}
        faults = sorted(self.faults.get(number, []), key=lambda fault: fault.after)
        reader = asyncio.create_task(self._read_requests(ws, streams))
        try:
            await self._send(ws, streams, faults)
        except websockets.ConnectionClosed:
            pass
        finally:
            reader.cancel()
            self.advance(self.skip_on_disconnect)

    async def _read_requests(self, ws: ServerConnection, streams: set[str]) -> None:
        async for raw in ws:
            request = json.loads(raw)
            self.subscribe_requests.append(request)
            method, params = request.get("method"), request.get("params", [])
            if method == "SUBSCRIBE":
                streams.update(params)
            elif method == "UNSUBSCRIBE":
                streams.difference_update(params)
            await ws.send(json.dumps({"result": None, "id": request.get("id")}))
            self._moved.set()

    async def _send(self, ws: ServerConnection, streams: set[str], faults: list[Fault]) -> None:
        position = self.cursor
        sent_here = 0
        while True:
            while faults and sent_here >= faults[0].after:
                fault = faults.pop(0)
                if fault.kind == "garbage":
                    for payload in fault.payloads:
                        await ws.send(payload)
                        self.garbage_sent += 1
                    continue
                self.advance(fault.skip)
                if fault.kind == "drop":
                    await asyncio.sleep(0.05)  # what was sent has reached the client: then the line dies
                    ws.transport.abort()
                    return
                await ws.wait_closed()  # stall: connected, silent, until the client gives up
                return
            position = max(position, self.cursor)
            if position >= len(self.messages) or (self.hold_at is not None and position >= self.hold_at):
                await self._wait_moved(ws)
                continue
            message = self.messages[position]
            position += 1
            self.cursor = max(self.cursor, position)
            if message.stream in streams:
                await ws.send(message.text)
                sent_here += 1
                self.sent[message.kind] += 1
                self.sent_by_stream[message.stream] += 1
                if self.pace is not None and sent_here % 10 == 0:
                    await asyncio.sleep(10 / self.pace)
                elif sent_here % 100 == 0:
                    await asyncio.sleep(0)

    async def _wait_moved(self, ws: ServerConnection) -> None:
        """Until the market moves or the connection closes (then ConnectionClosed)."""
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

    def release(self) -> None:
        """Let the market move past `hold_at`."""
        self.hold_at = None
        self._moved.set()

    # --- REST ------------------------------------------------------------------------------------

    def _rest_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(f"{self.rest_prefix}/aggTrades", self._agg_trades)
        app.router.add_get(f"{self.rest_prefix}/time", self._time)
        app.router.add_get(f"{self.rest_prefix}/klines", self._klines)
        return app

    def _rest_fault(self, request: web.Request) -> web.Response | None:
        self.rest_requests.append(str(request.rel_url))
        if not self.rest_faults:
            return None
        status = self.rest_faults.pop(0)
        headers = {"Retry-After": "0"} if status == 429 else {}
        return web.json_response({"code": -1003, "msg": "test server fault"}, status=status, headers=headers)

    def _happened(self) -> list[Message]:
        return self.messages[: self.cursor]

    async def _time(self, request: web.Request) -> web.Response:
        if (fault := self._rest_fault(request)) is not None:
            return fault
        happened = [m for m in self._happened() if m.rest_row is not None]
        now = happened[-1].rest_row["T"] if happened else 0  # type: ignore[index]
        return web.json_response({"serverTime": now})

    async def _agg_trades(self, request: web.Request) -> web.Response:
        if (fault := self._rest_fault(request)) is not None:
            return fault
        params = request.query
        symbol = params["symbol"]
        limit = min(int(params.get("limit", 500)), 1000)
        rows = [m.rest_row for m in self._happened() if m.symbol == symbol and m.rest_row is not None]
        rows.sort(key=lambda row: row["a"])
        if "fromId" in params:
            rows = [row for row in rows if row["a"] >= int(params["fromId"])]
        else:
            if "startTime" in params:
                rows = [row for row in rows if row["T"] >= int(params["startTime"])]
            if "endTime" in params:
                rows = [row for row in rows if row["T"] <= int(params["endTime"])]
        return web.json_response(rows[:limit])

    async def _klines(self, request: web.Request) -> web.Response:
        """The klines of what has happened, from the recorded kline messages (the latest update of
        each minute), in the REST row shape `[t, o, h, l, c, v, T, q, n, V, Q, B, "0"]`."""
        if (fault := self._rest_fault(request)) is not None:
            return fault
        params = request.query
        if params.get("interval") != "1m":
            return web.json_response({"code": -1120, "msg": "the recordings have 1m klines only"}, status=400)
        latest: dict[int, dict[str, Any]] = {}
        for message in self._happened():
            if message.kind == "kline" and message.symbol == params["symbol"]:
                k = json.loads(message.text)["data"]["k"]
                latest[k["t"]] = k
        start, end = int(params.get("startTime", 0)), int(params.get("endTime", 2**62))
        rows = [
            [k["t"], k["o"], k["h"], k["l"], k["c"], k["v"], k["T"], k["q"], k["n"], k["V"], k["Q"], k["B"], "0"]
            for t, k in sorted(latest.items())
            if start <= t <= end
        ]
        return web.json_response(rows[: int(params.get("limit", 500))])


def events_one_by_one(parser: BinanceParser, raws: Iterable[bytes | str]) -> list[SourceEvent]:
    """What the live adapter passes on for these messages: `parse`, then `clock_event`, per message."""
    events: list[SourceEvent] = []
    for raw in raws:
        event, _ = parser.parse(raw)
        if event is not None:
            events.append(event)
        clock = parser.clock_event()
        if clock is not None:
            events.append(clock)
    return events

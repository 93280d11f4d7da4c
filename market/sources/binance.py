"""Binance spot and USDⓈ-M futures: live trades from the raw combined websocket stream, exchange klines
to check our bars.

Why the raw stream (`websockets` + orjson) and not ccxt.pro: the collector's whole budget is a few
microseconds per trade, and ccxt's unified trade dicts cost tens; ccxt.pro also loads all markets over
REST before it streams, keeps its own reconnect and cache policy (ours is the breaker and backoff in
`resilience`), and drops what reconciliation needs: the kline's `x` (closed) flag and the first/last
trade ids of klines and aggregate trades.

Wire format (https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams):
`{base}/stream?streams=btcusdt@aggTrade/btcusdt@kline_1m` sends
`{"stream": "btcusdt@aggTrade", "data": {"e": "aggTrade", "E": 1672515782136, "s": "BTCUSDT", "a": 12345,
"p": "0.001", "q": "100", "f": 100, "l": 105, "T": 1672515782136, "m": true, "M": true}}`; kline data
carries `k: {t, o, h, l, c, v, n, f, L, x}`. Streams are added and removed on the open connection with
`{"method": "SUBSCRIBE" | "UNSUBSCRIBE", "params": [...], "id": n}`, answered by `{"result": null, "id": n}`.

Aggregate trades, not raw trades: their ids (`a`) are contiguous per symbol and the REST endpoint
`/api/v3/aggTrades` pages by id (`fromId`) or time, so after a reconnect the adapter fetches exactly the
trades it missed (and a jump in ids on a live connection is filled the same way): bars after a drop are
the bars of the uninterrupted stream. Raw `trade` messages are understood too.

USDⓈ-M futures (perpetual contracts) speak the same stream and REST formats on other hosts and paths:
`wss://fstream.binance.com/stream?streams=...` and `https://fapi.binance.com/fapi/v1/aggTrades`
(`/fapi/v1/time`). They are a source of their own (`binance-futures`, `BinanceSource.futures()`)
feeding the instruments of the exchange `binance-futures`, rather than a flag on spot instruments:
a perpetual and the spot pair of the same name are different markets with different prices, so they
need different instruments, and one collector process streams one exchange's instruments.
`SUSHI/USDT` on `binance-futures` is the SUSHIUSDT perpetual.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncGenerator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgspec
import orjson
import websockets
from websockets.asyncio.client import ClientConnection

from market.bars import MINUTE_MS, Trade, TradeRun
from market.sources.base import (
    ClockEvent,
    ExchangeBar,
    GapEvent,
    KlineEvent,
    MinuteClock,
    SourceEvent,
    SourceHealth,
    Subscription,
    TradeBatch,
    TradeEvent,
)
from market.sources.resilience import ReconnectingSource, RetryPolicy, SourceUnavailable

log = logging.getLogger(__name__)

# Quote assets Binance lists, longest first so that BTCUSDT is BTC/USDT and not BTCUS/DT.
QUOTE_ASSETS = sorted(
    ["USDT", "USDC", "FDUSD", "TUSD", "BUSD", "DAI", "BTC", "ETH", "BNB", "EUR", "TRY", "BRL", "JPY", "GBP", "USD"],
    key=len,
    reverse=True,
)
REST_PAGE = 1000  # the most aggTrades one REST request returns (spot and futures alike)
SPOT_REST_PREFIX = "/api/v3"
FUTURES_REST_PREFIX = "/fapi/v1"
HOUR_MS = 3_600_000
SUBSCRIBE_CHUNK = 100
COVERAGE_MINUTES = 60
# Messages of several streams arrive in roughly, not exactly, time order.
CLOCK_SLACK_MS = 5_000


def to_exchange_symbol(symbol: str) -> str:
    """`BTC/USDT` -> `BTCUSDT`."""
    return symbol.replace("/", "").upper()


def from_exchange_symbol(raw: str) -> str:
    """`BTCUSDT` -> `BTC/USDT`, by Binance's quote assets (the instrument table has the real split)."""
    raw = raw.upper()
    for quote in QUOTE_ASSETS:
        if raw.endswith(quote) and len(raw) > len(quote):
            return f"{raw[: -len(quote)]}/{quote}"
    raise ValueError(f"{raw!r} does not end in a known quote asset")


def stream_names(exchange_symbol: str) -> list[str]:
    lower = exchange_symbol.lower()
    return [f"{lower}@aggTrade", f"{lower}@kline_1m"]


@dataclass(slots=True)
class SymbolState:
    """What the adapter knows about one symbol across connections."""

    symbol: str
    exchange_symbol: str
    resume_after_ms: int | None = None
    last_id: int = -1  # the last aggregate trade id passed on
    streamed: bool = False  # subscribed on a connection before (so a reconnect may have missed trades)
    # Raw trade ids seen per minute (first, last, count), to tell whether a kline's minute was covered:
    # the current minute in attributes (every trade updates it), earlier minutes in `coverage`.
    minute: int = -1
    first: int = 0
    last: int = 0
    count: int = 0
    coverage: dict[int, list[int]] = field(default_factory=dict)

    def note(self, agg_id: int, time_ms: int, first: int, last: int) -> None:
        self.last_id = agg_id
        minute = time_ms - time_ms % MINUTE_MS
        if minute == self.minute:
            if first < self.first:
                self.first = first
            if last > self.last:
                self.last = last
            self.count += last - first + 1
            return
        if minute > self.minute:
            if self.minute >= 0:
                self.coverage[self.minute] = [self.first, self.last, self.count]
            self.minute, self.first, self.last, self.count = minute, first, last, last - first + 1
            if len(self.coverage) > 2 * COVERAGE_MINUTES:  # now and then, not a call every minute
                self._forget_old()
            return
        seen = self.coverage.get(minute)
        if seen is None:
            self.coverage[minute] = [first, last, last - first + 1]
            return
        if first < seen[0]:
            seen[0] = first
        if last > seen[1]:
            seen[1] = last
        seen[2] += last - first + 1

    def _forget_old(self) -> None:
        # Klines arrive soon after their minute, but after a catch-up the stream may still deliver
        # closes of minutes the REST pages went well past: keep an hour.
        horizon = self.minute - COVERAGE_MINUTES * MINUTE_MS
        for old in [m for m in self.coverage if m < horizon]:
            del self.coverage[old]

    def covered(self, minute: int, first: int, last: int) -> bool:
        """Did the trades we passed on include every raw trade of the kline's [first, last]?"""
        seen = [self.first, self.last, self.count] if minute == self.minute else self.coverage.get(minute)
        if first < 0:  # a minute without trades: Binance sends f = L = -1
            return seen is None
        return seen is not None and seen[0] == first and seen[1] == last and seen[2] == last - first + 1


class _AggTradeData(msgspec.Struct, gc=False):
    """The fields of an aggregate trade that the parser's hot path reads (others are skipped)."""

    kind: str = msgspec.field(name="e")
    event_ms: int = msgspec.field(name="E")
    symbol: str = msgspec.field(name="s")
    agg_id: int = msgspec.field(name="a")
    price: str = msgspec.field(name="p")
    amount: str = msgspec.field(name="q")
    first: int = msgspec.field(name="f")
    last: int = msgspec.field(name="l")
    time_ms: int = msgspec.field(name="T")


class _AggTradeMessage(msgspec.Struct, gc=False):
    data: _AggTradeData


# Why msgspec for the hot path: it decodes straight into these records, checking on the way that the
# ids and times are integers (not floats, strings or booleans), in about half the time orjson takes to
# build the message's dicts, which the parser then had to read and check field by field. Anything else
# (klines, subscription answers, a malformed message) fails to decode into them and goes the checked
# way, with orjson, as before.
_decode_agg_trade = msgspec.json.Decoder(_AggTradeMessage).decode


@dataclass(slots=True)
class _Batcher:
    """Events in order, consecutive trades of a symbol (ids counting up by one) gathered into one
    TradeBatch with the clock events that fell between them."""

    events: list[SourceEvent] = field(default_factory=list)
    symbol: str = ""
    next_seq: int = -1
    times: list[int] = field(default_factory=list)
    prices: list[float] = field(default_factory=list)
    amounts: list[float] = field(default_factory=list)
    clocks: list[tuple[int, int]] = field(default_factory=list)

    def trade(self, symbol: str, seq: int, time_ms: int, price: float, amount: float) -> None:
        if seq != self.next_seq or symbol != self.symbol:
            self.close()
            self.symbol = symbol
        self.next_seq = seq + 1
        self.times.append(time_ms)
        self.prices.append(price)
        self.amounts.append(amount)

    def clock(self, event: ClockEvent) -> None:
        if self.times:
            self.clocks.append((len(self.times) - 1, event.time_ms))
        else:
            self.events.append(event)

    def other(self, event: SourceEvent) -> None:
        self.close()
        self.events.append(event)

    def close(self) -> list[SourceEvent]:
        if self.times:
            run = TradeRun(self.times, self.prices, self.amounts, self.next_seq - len(self.times), self.clocks)
            self.events.append(TradeBatch(self.symbol, run))
            self.times, self.prices, self.amounts, self.clocks = [], [], [], []
        self.next_seq = -1
        return self.events


class BinanceParser:
    """Raw combined-stream messages to events. Shared by the live adapter, the replay of recorded
    traffic and the benchmark, so all three treat the wire format exactly alike."""

    def __init__(self, health: SourceHealth, *, clock_lag_ms: int = 0) -> None:
        self.health = health
        self.clock = MinuteClock(clock_lag_ms)  # from the event times (E) of the messages
        self.states: dict[str, SymbolState] = {}  # by exchange symbol

    def track(self, symbol: str, resume_after_ms: int | None = None) -> SymbolState:
        exchange_symbol = to_exchange_symbol(symbol)
        state = self.states.get(exchange_symbol)
        if state is None:
            state = self.states[exchange_symbol] = SymbolState(symbol, exchange_symbol, resume_after_ms)
        return state

    def untrack(self, symbol: str) -> None:
        self.states.pop(to_exchange_symbol(symbol), None)

    def parse(self, raw: bytes | str) -> tuple[SourceEvent | None, int | None]:
        """One message: (its event or None, the id of the first trade missed before it or None).

        A returned gap start means the trade ids jumped; the caller fetches the missing ones before
        passing the event on. The caller also asks `clock_event` after each message.

        The aggregate trade is the hot path (hundreds of thousands a second in a replay or catch-up):
        it assumes a well-formed message, computes everything that can fail before changing any
        state, and leaves finding out what exactly is wrong with a bad message to `_parse_checked`.
        """
        self.health.messages += 1
        try:
            data = _decode_agg_trade(raw).data  # the integer fields' types are checked by the decoder
            if data.kind != "aggTrade":
                return self._parse_checked(raw)
            state = self.states[data.symbol]
            agg_id = data.agg_id
            time_ms = data.time_ms
            event_ms = data.event_ms
            first = data.first
            last = data.last
            trade = Trade(time_ms, str(agg_id), float(data.price), float(data.amount), agg_id)
        except (msgspec.DecodeError, KeyError, ValueError):  # DecodeError: not JSON, or another shape
            return self._parse_checked(raw)
        clock = self.clock
        if event_ms > clock.source_ms:
            clock.source_ms = event_ms
        missed_from = None
        last_id = state.last_id
        if agg_id == last_id + 1 and time_ms - time_ms % MINUTE_MS == state.minute:
            # The usual case, inlined: the next trade of the minute being covered.
            state.last_id = agg_id
            if first < state.first:
                state.first = first
            if last > state.last:
                state.last = last
            state.count += last - first + 1
        elif agg_id > last_id:
            if last_id >= 0 and agg_id > last_id + 1:
                missed_from = last_id + 1
            state.note(agg_id, time_ms, first, last)
        return TradeEvent(state.symbol, trade), missed_from

    def parse_many(self, raws: Iterable[bytes | str]) -> list[SourceEvent]:
        """`parse` and `clock_event` after each of many messages (a recording replayed as fast as it
        goes), with the runs of consecutive aggregate trades of a symbol as TradeBatch events: the
        same events, gathered. Trade ids that jump are not fetched (`parse` tells its caller where
        they jump; there is nobody to ask in a recording): the builder counts the hole."""
        batcher = _Batcher()
        health, clock, states = self.health, self.clock, self.states
        for raw in raws:
            try:
                data = _decode_agg_trade(raw).data
                state = states[data.symbol]
                agg_id = data.agg_id
                usual = data.kind == "aggTrade" and agg_id == state.last_id + 1
                if usual:
                    price, amount = float(data.price), float(data.amount)
            except (msgspec.DecodeError, KeyError, ValueError):
                usual = False
            if usual:
                health.messages += 1
                if data.event_ms > clock.source_ms:
                    clock.source_ms = data.event_ms
                state.note(agg_id, data.time_ms, data.first, data.last)
                batcher.trade(state.symbol, agg_id, data.time_ms, price, amount)
            else:
                event, _ = self.parse(raw)  # anything else, the one-message way
                if event is not None:
                    batcher.other(event)
            if clock.source_ms >= clock.next_ms and (due := clock.due()) is not None:
                batcher.clock(due)
        return batcher.close()

    def _parse_checked(self, raw: bytes | str) -> tuple[SourceEvent | None, int | None]:
        """Any message, step by step, rejecting a bad one with the reason."""
        try:
            message = orjson.loads(raw)
            data = message["data"]
            kind = data["e"]
            event_ms = data["E"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self._not_data(raw)
            return None, None
        if type(event_ms) is int and event_ms > self.clock.source_ms:
            self.clock.source_ms = event_ms
        if kind == "aggTrade":
            return self._agg_trade(data)
        if kind == "kline":
            return self._kline(data), None
        if kind == "trade":
            return self._raw_trade(data), None
        self.health.reject("unexpected event type", raw)
        return None, None

    def clock_event(self, elapsed_ms: int = 0) -> ClockEvent | None:
        """A clock event when the source's clock (minus the lag) has passed a minute boundary;
        `elapsed_ms`: time since the last message, when the stream is quiet."""
        clock = self.clock
        if clock.source_ms + elapsed_ms < clock.next_ms:
            return None  # the usual answer, without a call
        return clock.due(elapsed_ms)

    def _agg_trade(self, data: dict[str, Any]) -> tuple[SourceEvent | None, int | None]:
        state = self.states.get(data.get("s"))  # type: ignore[arg-type]
        if state is None:
            self.health.reject("trade of a symbol not subscribed", data.get("s"))
            return None, None
        try:
            agg_id = data["a"]
            time_ms = data["T"]
            first = data["f"]
            last = data["l"]
            trade = Trade(time_ms, str(agg_id), float(data["p"]), float(data["q"]))
        except (KeyError, TypeError, ValueError):
            self.health.reject("malformed aggTrade", data)
            return None, None
        if type(agg_id) is not int or type(time_ms) is not int or type(first) is not int or type(last) is not int:
            self.health.reject("malformed aggTrade", data)
            return None, None
        trade.seq = agg_id
        missed_from = None
        if agg_id > state.last_id:
            if agg_id > state.last_id + 1 and state.last_id >= 0:
                missed_from = state.last_id + 1
            state.note(agg_id, time_ms, first, last)
        return TradeEvent(state.symbol, trade), missed_from

    def _raw_trade(self, data: dict[str, Any]) -> SourceEvent | None:
        state = self.states.get(data.get("s"))  # type: ignore[arg-type]
        if state is None:
            self.health.reject("trade of a symbol not subscribed", data.get("s"))
            return None
        try:
            time_ms = data["T"]
            trade = Trade(time_ms, f"t{data['t']}", float(data["p"]), float(data["q"]))
        except (KeyError, TypeError, ValueError):
            self.health.reject("malformed trade", data)
            return None
        if type(time_ms) is not int:
            self.health.reject("malformed trade", data)
            return None
        return TradeEvent(state.symbol, trade)

    def _kline(self, data: dict[str, Any]) -> SourceEvent | None:
        state = self.states.get(data.get("s"))  # type: ignore[arg-type]
        if state is None:
            self.health.reject("kline of a symbol not subscribed", data.get("s"))
            return None
        try:
            k = data["k"]
            closed = k["x"] is True
            minute = k["t"]
            bar = ExchangeBar(
                minute,
                float(k["o"]),
                float(k["h"]),
                float(k["l"]),
                float(k["c"]),
                float(k["v"]),
                closed,
                state.covered(minute, k["f"], k["L"]) if closed else None,
            )
        except (KeyError, TypeError, ValueError):
            self.health.reject("malformed kline", data)
            return None
        return KlineEvent(state.symbol, bar)

    def _not_data(self, raw: bytes | str) -> None:
        try:
            message = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self.health.reject("not JSON", raw)
            return
        if isinstance(message, dict) and "id" in message and "result" in message:
            return  # the answer to a SUBSCRIBE / UNSUBSCRIBE
        if isinstance(message, dict) and "error" in message:
            self.health.reject("error from Binance", message)
            return
        self.health.reject("not a stream message", raw)


def trade_from_rest(row: dict[str, Any]) -> Trade:
    agg_id = row["a"]
    return Trade(row["T"], str(agg_id), float(row["p"]), float(row["q"]), agg_id if type(agg_id) is int else -1)


@dataclass
class BinanceSource(ReconnectingSource):
    """Live Binance trades and klines for the subscribed symbols, gap-free across reconnects."""

    ws_url: str = "wss://stream.binance.com:9443"
    rest_url: str = "https://api.binance.com"
    #: Path prefix of the REST endpoints: `/api/v3` (spot) or `/fapi/v1` (USDⓈ-M futures).
    rest_prefix: str = SPOT_REST_PREFIX
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    clock_lag_ms: int = 1000
    #: A restart further back than this is not caught up trade by trade (a GapEvent asks for bars).
    max_catchup_ms: int = 2 * HOUR_MS
    name: str = "binance"
    exchange: str = "binance"

    @classmethod
    def futures(
        cls, *, ws_url: str = "wss://fstream.binance.com", rest_url: str = "https://fapi.binance.com", **kwargs: Any
    ) -> BinanceSource:
        """The USDⓈ-M futures market: the same protocol on fstream/fapi, instruments of `binance-futures`."""
        return cls(
            ws_url=ws_url,
            rest_url=rest_url,
            rest_prefix=FUTURES_REST_PREFIX,
            name="binance-futures",
            exchange="binance-futures",
            **kwargs,
        )

    def __post_init__(self) -> None:
        self.health.breaker = self.policy.breaker()
        self.parser = BinanceParser(self.health, clock_lag_ms=self.clock_lag_ms)
        self._request_ids = itertools.count(1)

    async def _session(self, reconnect: bool) -> AsyncGenerator[SourceEvent, None]:
        subscription = self.subscription
        while not subscription:
            self.health.state = "idle"
            await subscription.wait_changed(subscription.version)
        version = subscription.version
        self._follow(subscription)
        names = [name for state in self.parser.states.values() for name in stream_names(state.exchange_symbol)]
        url = f"{self.ws_url}/stream?streams={'/'.join(names)}"
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as http, await self._connect(url) as ws:
            self.health.connects += 1
            async for event in self._catch_up(http, list(self.parser.states.values())):
                yield event
            async for event in self._receive(ws, http, subscription, version):
                yield event

    async def _connect(self, url: str) -> ClientConnection:
        try:
            return await websockets.connect(
                url, open_timeout=10, ping_interval=20, ping_timeout=20, close_timeout=2, max_queue=4096, max_size=2**22
            )
        except websockets.InvalidStatus as exc:
            status = exc.response.status_code
            retry_after = _retry_after(exc.response.headers.get("Retry-After"))
            raise SourceUnavailable(f"websocket handshake refused: HTTP {status}", retry_after=retry_after) from exc

    async def _receive(
        self, ws: ClientConnection, http: aiohttp.ClientSession, subscription: Subscription, version: int
    ) -> AsyncGenerator[SourceEvent, None]:
        parser = self.parser
        stall = self.policy.stall_seconds
        last_message = time.monotonic()
        while True:
            if subscription.version != version:
                added = await self._resubscribe(ws, subscription)
                version = subscription.version
                async for event in self._catch_up(http, added):
                    yield event
            try:
                async with asyncio.timeout(min(1.0, stall)):
                    raw = await ws.recv(decode=False)
            except TimeoutError:
                quiet = time.monotonic() - last_message
                if quiet >= stall:
                    raise SourceUnavailable(f"no message for {stall:g} s: the stream stalled") from None
                heartbeat = parser.clock_event(int(quiet * 1000))
                if heartbeat is not None:
                    yield heartbeat
                continue
            last_message = time.monotonic()
            self.health.last_message_at = time.time()
            parsed, missed_from = parser.parse(raw)
            if missed_from is not None and isinstance(parsed, TradeEvent):
                async for filled in self._fill_jump(http, parsed, missed_from):
                    yield filled
            if parsed is not None:
                yield parsed
            clock = parser.clock_event()
            if clock is not None:
                yield clock

    async def _fill_jump(
        self, http: aiohttp.ClientSession, parsed: TradeEvent, missed_from: int
    ) -> AsyncGenerator[SourceEvent, None]:
        """The trades between the last one passed on and `parsed`, whose id jumped past them."""
        state = self.parser.states[to_exchange_symbol(parsed.symbol)]
        passed_on = missed_from - 1
        try:
            async for filled in self._fetch_ids(http, state, missed_from, parsed.trade.seq):
                passed_on = max(passed_on, _last_seq(filled))
                yield filled
        except BaseException:
            # REST failed (or we are stopping) part way: the parser already counted `parsed` as
            # passed on, but neither it nor the rest of the missed trades were. Rewind, so that the
            # catch-up after the reconnect fetches them instead of starting after `parsed`.
            state.last_id = passed_on
            raise

    def _follow(self, subscription: Subscription) -> list[SymbolState]:
        """Track the subscription's symbols; returns the states added."""
        added = []
        for symbol in set(subscription) - {state.symbol for state in self.parser.states.values()}:
            added.append(self.parser.track(symbol, subscription[symbol]))
        for state in [s for s in self.parser.states.values() if s.symbol not in subscription]:
            self.parser.untrack(state.symbol)
        return added

    async def _resubscribe(self, ws: ClientConnection, subscription: Subscription) -> list[SymbolState]:
        before = {state.exchange_symbol for state in self.parser.states.values()}
        added = self._follow(subscription)
        after = {state.exchange_symbol for state in self.parser.states.values()}
        for method, symbols in (("UNSUBSCRIBE", before - after), ("SUBSCRIBE", after - before)):
            params = [name for symbol in sorted(symbols) for name in stream_names(symbol)]
            for start in range(0, len(params), SUBSCRIBE_CHUNK):
                chunk = params[start : start + SUBSCRIBE_CHUNK]
                await ws.send(orjson.dumps({"method": method, "params": chunk, "id": next(self._request_ids)}).decode())
                log.info("%s: %s %s", self.name, method.lower(), ", ".join(chunk))
        return added

    async def _catch_up(
        self, http: aiohttp.ClientSession, states: Iterable[SymbolState]
    ) -> AsyncGenerator[SourceEvent, None]:
        """The trades each symbol missed since the last one passed on (or since its resume point)."""
        streamed_until = self.parser.clock.source_ms  # the stream's clock when it broke (-1: never)
        server_now: int | None = None
        for state in states:
            since: int | None = None
            if state.last_id >= 0:
                async for event in self._fetch_ids(http, state, state.last_id + 1, None):
                    yield event
            elif state.resume_after_ms is not None:
                since = state.resume_after_ms + 1
            elif streamed_until >= 0 and state.streamed:
                # It had no trade yet, but its stream was live until then: fetch what came after.
                since = streamed_until - CLOCK_SLACK_MS
            if since is not None:
                server_now = server_now or await self._server_time(http)
                async for event in self._fetch_since(http, state, since, server_now):
                    yield event
            state.streamed = True

    async def _fetch_since(
        self, http: aiohttp.ClientSession, state: SymbolState, start_ms: int, server_now: int
    ) -> AsyncGenerator[SourceEvent, None]:
        oldest = server_now - self.max_catchup_ms
        oldest -= oldest % MINUTE_MS  # whole minutes: the trades build one side, the bar backfill the other
        if start_ms < oldest:
            yield GapEvent(state.symbol, start_ms, oldest, "longer ago than the trade catch-up covers")
            start_ms = oldest
        # The first page by time (Binance allows windows under an hour), the rest by id.
        while start_ms <= server_now:
            params = {"startTime": start_ms, "endTime": min(start_ms + HOUR_MS - 1, server_now)}
            rows = await self._agg_trades(http, state.exchange_symbol, params)
            if rows:
                for event in self._rest_events(state, rows):
                    yield event
                async for event in self._fetch_ids(http, state, rows[-1]["a"] + 1, None):
                    yield event
                return
            start_ms += HOUR_MS

    async def _fetch_ids(
        self, http: aiohttp.ClientSession, state: SymbolState, from_id: int, before_id: int | None
    ) -> AsyncGenerator[SourceEvent, None]:
        """Trades with ids from `from_id` up to (not including) `before_id`, or up to the latest."""
        log.info("%s: fetching %s trades from id %d", self.name, state.exchange_symbol, from_id)
        while before_id is None or from_id < before_id:
            rows = await self._agg_trades(http, state.exchange_symbol, {"fromId": from_id})
            wanted = rows if before_id is None else list(itertools.takewhile(lambda row: row["a"] < before_id, rows))
            for event in self._rest_events(state, wanted):
                yield event
            if len(wanted) < len(rows) or len(rows) < REST_PAGE:
                return
            from_id = rows[-1]["a"] + 1

    def _rest_events(self, state: SymbolState, rows: list[dict[str, Any]]) -> list[SourceEvent]:
        """A page of REST aggTrades as events: its runs of consecutive ids (all of it, usually) as
        TradeBatch events, so that a catch-up of hours of trades costs the collector a call a page."""
        batcher = _Batcher()
        for row in rows:
            try:
                trade = trade_from_rest(row)
                if row["a"] > state.last_id:
                    state.note(row["a"], row["T"], row["f"], row["l"])
            except (KeyError, TypeError, ValueError):
                self.health.reject("malformed REST aggTrade", row)
                continue
            if trade.seq >= 0:
                batcher.trade(state.symbol, trade.seq, trade.time_ms, trade.price, trade.amount)
            else:
                batcher.other(TradeEvent(state.symbol, trade))
        return batcher.close()

    async def _agg_trades(
        self, http: aiohttp.ClientSession, symbol: str, params: dict[str, int]
    ) -> list[dict[str, Any]]:
        query: dict[str, int | str] = {"symbol": symbol, "limit": REST_PAGE, **params}
        rows = await self._get(http, f"{self.rest_prefix}/aggTrades", query)
        if not isinstance(rows, list):
            raise SourceUnavailable(f"aggTrades answered {str(rows)[:200]}")
        return rows

    async def _server_time(self, http: aiohttp.ClientSession) -> int:
        body = await self._get(http, f"{self.rest_prefix}/time", {})
        return int(body["serverTime"])

    async def _get(self, http: aiohttp.ClientSession, path: str, params: Mapping[str, int | str]) -> Any:
        async with http.get(f"{self.rest_url}{path}", params=params) as response:
            body = await response.read()
            if response.status in (418, 429):
                retry_after = _retry_after(response.headers.get("Retry-After"))
                raise SourceUnavailable(f"REST {path} rate limited (HTTP {response.status})", retry_after=retry_after)
            if response.status != 200:
                raise SourceUnavailable(f"REST {path} answered HTTP {response.status}: {body[:200]!r}")
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise SourceUnavailable(f"REST {path} answered something that is not JSON: {body[:200]!r}") from exc


def _last_seq(event: SourceEvent) -> int:
    """The highest trade id of a REST page's event (-1 for a trade without one)."""
    if isinstance(event, TradeBatch):
        return event.run.first_seq + len(event.run) - 1
    return event.trade.seq if isinstance(event, TradeEvent) else -1


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None

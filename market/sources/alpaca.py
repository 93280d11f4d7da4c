"""Alpaca: US stock trades (IEX or SIP feed) or crypto trades, and Alpaca's minute bars to check ours.

Through alpaca-py's own data streams (`StockDataStream`, `CryptoDataStream`), which speak Alpaca's
protocol: connect, `{"action": "auth", "key", "secret"}`, `{"action": "subscribe", "trades": [...],
"bars": [...]}`, then msgpack arrays of `{"T": "t", "S": "AAPL", "i": 151, "x": "D", "p": 159.07, "s": 1,
"t": <timestamp>, "c": [...], "z": "C"}` trades and `{"T": "b", ...}` minute bars.

Why the stream's private session steps (`_start_ws`, `_send_subscribe_msg`, `_send_unsubscribe_msg`,
`_consume`, alpaca-py 0.44, pinned) and not its public `run()`: `run()` is `asyncio.run(_run_forever())`,
so it needs a thread and an event loop of its own, and `_run_forever` retries every failure itself
(its own 1-30 s backoff) after logging and swallowing the exception. Through the public API a
collector never learns that the connection dropped or came back: no reconnect count, no circuit
breaker, no `Retry-After`, and, what decides it, no REST catch-up after the reconnect, so the trades
of every outage would be lost (and with them whole minutes). The public `subscribe_trades` /
`unsubscribe_trades` also block their caller until the stream's loop has sent the message. So the
adapter drives those four steps inside the shared reconnect loop with our breaker, backoff and
catch-up; its tests run them against the local Alpaca server, so an alpaca-py that changes them
fails there, not in production. Everything else is public: the streams are built with their
documented `url_override`, `raw_data` and `data_timeout` arguments, and the catch-up uses the
historical clients (`url_override`, `raw_data=True`), which page through `next_page_token`; trade
ids make the overlap with the stream harmless.

Symbols are Alpaca's own: `AAPL`, `BTC/USD`. Trade ids are unique per stock exchange, so a stock
trade's id is `<exchange>-<id>`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import warnings
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgpack

from market.bars import MINUTE_MS, Trade
from market.sources.base import (
    ExchangeBar,
    KlineEvent,
    MinuteClock,
    SourceEvent,
    TradeEvent,
)
from market.sources.resilience import ReconnectingSource, RetryPolicy, SourceUnavailable

if TYPE_CHECKING:
    from market.sources import SourceConfig

log = logging.getLogger(__name__)

# Messages of several symbols arrive in roughly, not exactly, time order.
CLOCK_SLACK_MS = 5_000
UNDECODABLE = (ValueError, TypeError, AttributeError, KeyError, msgpack.UnpackException)


def timestamp_ms(value: Any) -> int:
    """An Alpaca timestamp (msgpack Timestamp on the stream, RFC 3339 text over REST) in epoch ms."""
    if isinstance(value, msgpack.Timestamp):
        return value.seconds * 1000 + value.nanoseconds // 1_000_000
    if isinstance(value, str):
        base, _, fraction = value.rstrip("Z").partition(".")
        seconds = datetime.fromisoformat(base).replace(tzinfo=UTC).timestamp()
        return int(seconds) * 1000 + int((fraction + "000")[:3])
    raise TypeError(f"not a timestamp: {value!r}")


def parse_trade(message: Mapping[str, Any], *, crypto: bool) -> Trade:
    """A trade of the stream (`T` = "t") or of the REST API; raises on anything malformed."""
    trade_id = message["i"] if crypto else f"{message['x']}-{message['i']}"
    return Trade(timestamp_ms(message["t"]), str(trade_id), float(message["p"]), float(message["s"]))


def parse_bar(message: Mapping[str, Any]) -> ExchangeBar:
    return ExchangeBar(
        timestamp_ms(message["t"]),
        float(message["o"]),
        float(message["h"]),
        float(message["l"]),
        float(message["c"]),
        float(message["v"]),
        closed=True,
    )


class _Ended(Exception):
    """The stream's consumer stopped: the connection broke or went stale."""


@dataclass
class AlpacaSource(ReconnectingSource):
    api_key: str = ""
    secret_key: str = ""
    crypto: bool = False
    feed: str = "iex"
    stream_url: str = ""  # empty: alpaca-py's default for the feed
    data_url: str = "https://data.alpaca.markets"
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    clock_lag_ms: int = 1000
    calendar: str | None = None
    name: str = "alpaca"
    exchange: str = "alpaca"

    @classmethod
    def from_config(cls, *, crypto: bool, config: SourceConfig) -> AlpacaSource:
        return cls(
            api_key=config.alpaca_api_key,
            secret_key=config.alpaca_secret_key,
            crypto=crypto,
            feed=config.alpaca_stock_feed,
            stream_url=config.alpaca_crypto_stream_url if crypto else config.alpaca_stock_stream_url,
            data_url=config.alpaca_data_url,
            policy=config.policy,
            clock_lag_ms=config.clock_lag_ms,
            calendar=None if crypto else config.stock_calendar,
            name="alpaca-crypto" if crypto else "alpaca",
        )

    def __post_init__(self) -> None:
        self.asset_classes = ("crypto",) if self.crypto else ("stock",)
        self.health.breaker = self.policy.breaker()
        self.clock = MinuteClock(self.clock_lag_ms)
        self.last_trade_ms: dict[str, int] = {}  # per symbol: the time of the last trade passed on

    def _new_stream(self) -> Any:
        with warnings.catch_warnings():
            # alpaca-py 0.44 still connects through websockets' legacy client, deprecated since 14.
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"websockets\.legacy")
            from alpaca.data.enums import DataFeed
            from alpaca.data.live import CryptoDataStream, StockDataStream

        common: dict[str, Any] = {
            "raw_data": True,
            "url_override": self.stream_url or None,
            "data_timeout": self.policy.stall_seconds,
        }
        if self.crypto:
            return CryptoDataStream(self.api_key, self.secret_key, **common)
        return StockDataStream(self.api_key, self.secret_key, feed=DataFeed(self.feed), **common)

    async def _session(self, reconnect: bool) -> AsyncGenerator[SourceEvent, None]:
        subscription = self.subscription
        while not subscription:
            self.health.state = "idle"
            await subscription.wait_changed(subscription.version)
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stream = self._new_stream()
        symbols = set(subscription)
        self._subscribe(stream, queue, symbols)
        version = subscription.version
        consumer: asyncio.Task[None] | None = None
        try:
            await stream._start_ws()
            self.health.connects += 1
            await stream._send_subscribe_msg()
            consumer = asyncio.create_task(self._consume(stream, queue))
            async for event in self._catch_up({s: subscription.get(s) for s in symbols}):
                yield event
            last_message = time.monotonic()
            while True:
                if subscription.version != version:
                    version = subscription.version
                    added = await self._resubscribe(stream, queue, symbols, set(subscription))
                    async for event in self._catch_up({s: subscription.get(s) for s in added}):
                        yield event
                    symbols = set(subscription)
                try:
                    async with asyncio.timeout(1.0):
                        kind, message = await queue.get()
                except TimeoutError:
                    heartbeat = self.clock.due(int((time.monotonic() - last_message) * 1000))
                    if heartbeat is not None:
                        yield heartbeat
                    continue
                last_message = time.monotonic()
                if kind == "end":
                    raise SourceUnavailable(f"the stream ended: {message}")
                parsed = self._event(kind, message)
                if parsed is not None:
                    yield parsed
                    clock = self.clock.due()
                    if clock is not None:
                        yield clock
        finally:
            if consumer is not None:
                consumer.cancel()
                await asyncio.gather(consumer, return_exceptions=True)
            await stream.close()

    def _subscribe(self, stream: Any, queue: asyncio.Queue[tuple[str, Any]], symbols: set[str]) -> None:
        async def on_trade(message: dict[str, Any]) -> None:
            queue.put_nowait(("t", message))

        async def on_bar(message: dict[str, Any]) -> None:
            queue.put_nowait(("b", message))

        if symbols:
            stream.subscribe_trades(on_trade, *symbols)
            stream.subscribe_bars(on_bar, *symbols)

    async def _resubscribe(
        self, stream: Any, queue: asyncio.Queue[tuple[str, Any]], before: set[str], after: set[str]
    ) -> set[str]:
        added, removed = after - before, before - after
        if removed:
            stream.unsubscribe_trades(*removed)
            stream.unsubscribe_bars(*removed)
            await stream._send_unsubscribe_msg("trades", sorted(removed))
            await stream._send_unsubscribe_msg("bars", sorted(removed))
        if added:
            self._subscribe(stream, queue, added)
            await stream._send_subscribe_msg()
        log.info("%s: subscribed %s, unsubscribed %s", self.name, sorted(added), sorted(removed))
        return added

    async def _consume(self, stream: Any, queue: asyncio.Queue[tuple[str, Any]]) -> None:
        """alpaca-py's receive loop; a frame it cannot decode is counted, not fatal."""
        try:
            while True:
                try:
                    stale = await stream._consume()
                except UNDECODABLE as exc:
                    self.health.reject("undecodable frame", exc)
                    continue
                queue.put_nowait(("end", "no market data for a while (stale)" if stale else "stopped"))
                return
        except Exception as exc:  # the session loop raises it as a connection failure
            queue.put_nowait(("end", f"{exc.__class__.__name__}: {exc}"))

    def _event(self, kind: str, message: dict[str, Any]) -> SourceEvent | None:
        self.health.received()
        symbol = message.get("S")
        try:
            if kind == "t":
                trade = parse_trade(message, crypto=self.crypto)
                self.clock.observe(trade.time_ms)
                if trade.time_ms > self.last_trade_ms.get(symbol, -1):  # type: ignore[arg-type]
                    self.last_trade_ms[symbol] = trade.time_ms  # type: ignore[index]
                return TradeEvent(symbol, trade)  # type: ignore[arg-type]
            bar = parse_bar(message)
            self.clock.observe(bar.time_ms + MINUTE_MS)
            return KlineEvent(symbol, bar)  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError):
            self.health.reject(f"malformed {'trade' if kind == 't' else 'bar'}", message)
            return None

    async def _catch_up(self, symbols: Mapping[str, int | None]) -> AsyncGenerator[SourceEvent, None]:
        """Trades since the last one passed on (or since the resume point), over REST."""
        starts: dict[str, int] = {}
        streamed_until = self.clock.source_ms  # the stream's clock when it broke (-1: never streamed)
        for symbol, resume in symbols.items():
            if symbol in self.last_trade_ms:
                starts[symbol] = self.last_trade_ms[symbol]  # that trade again: its id dedupes it
            elif streamed_until >= 0:
                # No trade of its own yet, but the stream was live until then: nothing is missing before.
                starts[symbol] = streamed_until - CLOCK_SLACK_MS
            elif resume is not None:
                starts[symbol] = resume + 1
        if not starts:
            return
        started = time.monotonic()
        try:
            pages = await asyncio.to_thread(self._fetch_trades, starts)
        except Exception as exc:  # alpaca-py raises APIError, requests errors, ValueError...
            raise SourceUnavailable(f"REST catch-up failed: {exc.__class__.__name__}: {exc}") from exc
        count = 0
        for symbol, rows in pages.items():
            for row in rows:
                try:
                    trade = parse_trade(row, crypto=self.crypto)
                except (KeyError, TypeError, ValueError):
                    self.health.reject("malformed REST trade", row)
                    continue
                if trade.time_ms > self.last_trade_ms.get(symbol, -1):
                    self.last_trade_ms[symbol] = trade.time_ms
                self.clock.observe(trade.time_ms)
                count += 1
                yield TradeEvent(symbol, trade)
        log.info("%s: caught up %d trades over REST in %.2f s", self.name, count, time.monotonic() - started)

    def _fetch_trades(self, starts: Mapping[str, int]) -> dict[str, list[dict[str, Any]]]:
        """All trades of each symbol since its start, every page (runs in a worker thread)."""
        from alpaca.data.enums import DataFeed
        from alpaca.data.historical import CryptoHistoricalDataClient, StockHistoricalDataClient
        from alpaca.data.requests import CryptoTradesRequest, StockTradesRequest

        url = self.data_url or None
        trades: dict[str, list[dict[str, Any]]] = {}
        for symbol, start_ms in starts.items():
            start = datetime.fromtimestamp(start_ms / 1000, UTC)
            if self.crypto:
                crypto = CryptoHistoricalDataClient(
                    self.api_key or None, self.secret_key or None, raw_data=True, url_override=url
                )
                result = crypto.get_crypto_trades(CryptoTradesRequest(symbol_or_symbols=[symbol], start=start))
            else:
                stock = StockHistoricalDataClient(self.api_key, self.secret_key, raw_data=True, url_override=url)
                request = StockTradesRequest(symbol_or_symbols=[symbol], start=start, feed=DataFeed(self.feed))
                result = stock.get_stock_trades(request)
            trades[symbol] = list(result.get(symbol, []))  # type: ignore[union-attr]
        return trades

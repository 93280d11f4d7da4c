"""The one interface every data source speaks. Pure: no Django imports.

A source turns some outside stream (an exchange websocket, a REST poll, a recording) into an async
stream of normalized events. It does network or file I/O only: bars are built, stored and published
by the collector, the same way for every source.

Events:
- `TradeEvent`: one trade of one symbol (most sources);
- `TradeBatch`: many consecutive trades of one symbol with the clock events between them (catch-ups,
  replays): the same as those events one by one, at a fraction of the cost;
- `ClockEvent`: the source's clock has reached a time, so bars that ended before it can close;
- `BarEvent`: a bar the source supplies itself (sources without trades: Yahoo polls, OHLCV files);
- `KlineEvent`: the exchange's own bar for a minute, only to check ours against (Binance kline_1m,
  Alpaca minute bars);
- `GapEvent`: trades of a span are known to be missing and the source could not fetch them itself.

Symbols are the user's (`BTC/USDT`, `AAPL`); mapping to the exchange's spelling is the adapter's job.
`stream` takes the symbols with the time to resume after. A `Subscription` is such a mapping that
the collector changes while the stream runs (instruments added or removed in the admin); a source
follows it without restarting.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncGenerator, Iterator, Mapping
from dataclasses import dataclass, field

from market.bars import MINUTE_MS, MinuteBar, Trade, TradeRun
from market.circuit import CircuitBreaker

log = logging.getLogger(__name__)


# Events are plain slotted dataclasses, the cheapest records to create (see market.bars.Trade):
# treat them as immutable.


@dataclass(slots=True)
class TradeEvent:
    symbol: str
    trade: Trade


@dataclass(slots=True)
class TradeBatch:
    """Consecutive trades of one symbol with consecutive sequence numbers, and the clock events that
    fell between them (`market.bars.TradeRun`): what a catch-up page or a burst of a replay delivers
    as one event, so that the collector handles thousands of trades a call instead of one."""

    symbol: str
    run: TradeRun


@dataclass(slots=True)
class ClockEvent:
    """The source's clock has reached `time_ms`: bars that ended before it can close."""

    time_ms: int


@dataclass(slots=True)
class BarEvent:
    """A 1m bar supplied by the source. `final` False: the minute is still running (a partial bar)."""

    symbol: str
    bar: MinuteBar
    final: bool


@dataclass(frozen=True, slots=True)
class ExchangeBar:
    """A minute bar as the exchange computed it. `closed` False: a running update of the minute."""

    time_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    closed: bool
    #: Did we see every trade of this minute? True/False when the source can tell (Binance, by
    #: trade ids), None when it cannot.
    covered: bool | None = None


@dataclass(slots=True)
class KlineEvent:
    symbol: str
    bar: ExchangeBar


@dataclass(slots=True)
class GapEvent:
    """Trades of `symbol` in [start_ms, end_ms) are missing and the source could not fetch them."""

    symbol: str
    start_ms: int
    end_ms: int
    reason: str


SourceEvent = TradeEvent | TradeBatch | ClockEvent | BarEvent | KlineEvent | GapEvent


@dataclass(slots=True)
class MinuteClock:
    """The source's clock, from the source's own timestamps: `due` gives a ClockEvent each time it
    passes a minute boundary by `lag_ms` (a grace for stragglers). Between messages a live adapter
    passes the time elapsed since the last one (a heartbeat), so a quiet market still closes its bars."""

    lag_ms: int = 0
    source_ms: int = -1
    next_ms: int = -1

    def observe(self, time_ms: int) -> None:
        if time_ms > self.source_ms:
            self.source_ms = time_ms

    def due(self, elapsed_ms: int = 0) -> ClockEvent | None:
        now = self.source_ms + elapsed_ms
        if self.source_ms < 0 or now < self.next_ms:
            return None
        first = self.next_ms < 0
        at = now - self.lag_ms
        self.next_ms = at - at % MINUTE_MS + MINUTE_MS + self.lag_ms
        return None if first else ClockEvent(at)


class Subscription(Mapping[str, int | None]):
    """The symbols a source should stream now, each with the time (epoch ms) to resume after.

    The collector calls `update`; a running source notices through `version` / `wait_changed` and
    subscribes or unsubscribes on its open connection.
    """

    def __init__(self, symbols: Mapping[str, int | None]) -> None:
        self._symbols = dict(symbols)
        self.version = 0
        self._changed = asyncio.Event()

    def __getitem__(self, symbol: str) -> int | None:
        return self._symbols[symbol]

    def __iter__(self) -> Iterator[str]:
        return iter(self._symbols)

    def __len__(self) -> int:
        return len(self._symbols)

    def update(self, symbols: Mapping[str, int | None]) -> None:
        if set(symbols) == set(self._symbols):
            return
        self._symbols = dict(symbols)
        self.version += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait_changed(self, seen_version: int) -> None:
        while self.version == seen_version:
            await self._changed.wait()


def as_subscription(symbols: Mapping[str, int | None]) -> Subscription:
    return symbols if isinstance(symbols, Subscription) else Subscription(symbols)


#: How many rejected messages of one reason are logged one by one before only every 1000th is.
LOGGED_REJECTIONS = 20


@dataclass
class SourceHealth:
    """What a source tells the collector about its connection; the collector stores it."""

    state: str = "starting"  # connecting, streaming, backoff, breaker-open, idle, stopped
    connects: int = 0
    reconnects: int = 0
    messages: int = 0
    last_message_at: float | None = None  # wall clock, epoch seconds
    last_error: str = ""
    rejected: Counter[str] = field(default_factory=Counter)
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)

    def received(self, count: int = 1) -> None:
        self.messages += count
        self.last_message_at = time.time()

    def reject(self, reason: str, detail: object = "") -> None:
        """Count a message we could not use, and say why in the log (without flooding it)."""
        self.rejected[reason] += 1
        seen = self.rejected[reason]
        if seen <= LOGGED_REJECTIONS or seen % 1000 == 0:
            log.warning("rejected message (%s, %d so far): %.200s", reason, seen, detail)


class Source(abc.ABC):
    #: The name used on the command line (`collect --source NAME`).
    name: str
    #: The exchange code whose instruments this source feeds.
    exchange: str
    #: Asset classes of that exchange this source streams (empty: all).
    asset_classes: tuple[str, ...] = ()
    #: An exchange-calendars name when the market has sessions (the collector idles outside them).
    calendar: str | None = None

    @property
    def health(self) -> SourceHealth:
        health: SourceHealth | None = getattr(self, "_health", None)
        if health is None:
            health = SourceHealth()
            self._health = health
        return health

    @abc.abstractmethod
    def stream(self, symbols: Mapping[str, int | None]) -> AsyncGenerator[SourceEvent, None]:
        """Events for `symbols`, each mapped to the time (epoch ms) to resume after, or None."""

"""Replay of recorded real market data as if it were live: the demo source and a test source.

Three kinds of recordings, told apart by their content:
- freqtrade trade files (`[timestamp_ms, id, type, side, price, amount, cost]` rows as `.json`,
  `.json.gz`, `.feather` or `.parquet`): replayed as trades;
- OHLCV files (freqtrade's `[[ms, o, h, l, c, v], ...]` JSON or feather/parquet with date, open, high,
  low, close, volume columns) of 1m candles: replayed as final bars, each at its close time;
- cryptofeed recordings of Binance's raw websocket traffic (`BINANCE.ws.1.0`: a `<url> <-> <ts>` line,
  then `<ts>: <message>` lines): parsed by the live Binance adapter's own parser, so aggTrade and
  kline messages become exactly the events the live source would have produced.

Time is kept as recorded, scaled by `speed` (60 = a recorded minute per second, 0 = as fast as
possible). With `loop`, the recording repeats shifted by whole days, so time keeps moving forward and
minute/day boundaries stay where they were; trade ids get a loop suffix so that deduplication does
not swallow the repeats.
"""

from __future__ import annotations

import asyncio
import gzip
import heapq
import itertools
import json
import time
from collections.abc import AsyncGenerator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from market.bars import MINUTE_MS, MinuteBar, Trade
from market.sources.base import BarEvent, ClockEvent, KlineEvent, Source, SourceEvent, SourceHealth, TradeEvent

DAY_MS = 86_400_000


def read_trades(path: Path) -> list[Trade]:
    """Trades of a freqtrade trades file, in file order."""
    name = path.name
    if name.endswith((".json", ".json.gz")):
        return trades_from_rows(_read_json(path))
    return trades_from_frame(_read_frame(path))


def trades_from_rows(rows: Sequence[Sequence[Any]]) -> list[Trade]:
    return [Trade(int(r[0]), str(r[1]), float(r[4]), float(r[5])) for r in rows]


def trades_from_frame(frame: pd.DataFrame) -> list[Trade]:
    return [
        Trade(int(t), str(i), float(p), float(a))
        for t, i, p, a in zip(frame["timestamp"], frame["id"], frame["price"], frame["amount"], strict=True)
    ]


def read_ohlcv(path: Path) -> list[MinuteBar]:
    """1m candles of an OHLCV file (freqtrade JSON rows or a date/open/high/low/close/volume frame)."""
    if path.name.endswith((".json", ".json.gz")):
        return bars_from_rows(_read_json(path))
    return bars_from_frame(_read_frame(path))


def bars_from_rows(rows: Sequence[Sequence[Any]]) -> list[MinuteBar]:
    bars = [_bar(int(r[0]), *(float(value) for value in r[1:6])) for r in rows]
    _check_one_minute(bars)
    return bars


def bars_from_frame(frame: pd.DataFrame) -> list[MinuteBar]:
    times = pd.to_datetime(frame["date"], utc=True).astype("int64") // 1_000_000
    columns = [frame[name].astype(float).tolist() for name in ("open", "high", "low", "close", "volume")]
    bars = [_bar(int(t), *values) for t, *values in zip(times.tolist(), *columns, strict=True)]
    _check_one_minute(bars)
    return bars


def _bar(time_ms: int, open_: float, high: float, low: float, close: float, volume: float) -> MinuteBar:
    # Candles carry no trade count and no vwap: trades 0 and notional 0 say "unknown" (stored as null).
    return MinuteBar(time_ms, open_, high, low, close, volume, 0, 0.0, time_ms, time_ms)


def _check_one_minute(bars: Sequence[MinuteBar]) -> None:
    steps = {b.time_ms - a.time_ms for a, b in itertools.pairwise(bars)}
    if bars and (bars[0].time_ms % MINUTE_MS or (steps and min(steps) != MINUTE_MS)):
        raise ValueError("OHLCV replay needs 1m candles (minute-aligned, at least one pair a minute apart)")


@dataclass(frozen=True, slots=True)
class RecordedMessage:
    received_ms: int  # when the recorder received it
    raw: str  # the message, verbatim


def read_cryptofeed(path: Path) -> tuple[str, list[RecordedMessage]]:
    """A cryptofeed websocket recording: its connection URL and the messages received, in order."""
    url = ""
    messages = []
    with path.open() as handle:
        for line in handle:
            head, sep, raw = line.partition(": ")
            if " <-> " in head and not url:
                url = head.split(" <-> ")[0]
                continue
            if not sep or " " in head:
                continue  # a message the client sent (`<url> <- <ts>: ...`), or a blank line
            try:
                received = float(head)
            except ValueError:
                continue
            messages.append(RecordedMessage(int(received * 1000), raw.rstrip("\n")))
    return url, messages


def recording_kind(path: Path) -> str:
    """trades, ohlcv or cryptofeed, by the file's content."""
    if ".ws." in path.name:
        return "cryptofeed"
    if path.name.endswith((".json", ".json.gz")):
        rows = _read_json(path)
        return "ohlcv" if rows and len(rows[0]) == 6 else "trades"
    columns = set(_read_frame(path).columns)
    return "trades" if {"timestamp", "id", "price", "amount"} <= columns else "ohlcv"


def _read_json(path: Path) -> Any:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt") as handle:
        return json.load(handle)


def _read_frame(path: Path) -> pd.DataFrame:
    if path.name.endswith(".feather"):
        return pd.read_feather(path)
    if path.name.endswith(".parquet"):
        return pd.read_parquet(path)
    raise ValueError(f"{path}: not a recording (.json, .json.gz, .feather, .parquet or a cryptofeed .ws. file)")


def loop_period_ms(first_ms: int, last_ms: int) -> int:
    """The shift between two loops: the recording's span rounded up to whole days."""
    span = last_ms - first_ms + 1
    return -(-span // DAY_MS) * DAY_MS


def looped_trades(trades: list[Trade], *, resume_after_ms: int | None, loop: bool) -> Iterator[Trade]:
    """The recording from just after `resume_after_ms`, repeated day-aligned if `loop`."""
    for _, event in _looped([(t.time_ms, TradeEvent("", t)) for t in trades], resume_after_ms, loop):
        assert isinstance(event, TradeEvent)
        yield event.trade


Timed = tuple[int, SourceEvent]  # (time on the recording's clock, event)


def _looped(events: list[Timed], resume_after_ms: int | None, loop: bool) -> Iterator[Timed]:
    if not events:
        return
    period = loop_period_ms(events[0][0], events[-1][0])
    first_loop = 0
    if resume_after_ms is not None and loop:
        first_loop = max(0, -(-(resume_after_ms - events[-1][0]) // period))
    k = first_loop
    while True:
        shift = k * period
        for time_ms, event in events:
            if resume_after_ms is not None and _resume_time(event, time_ms) + shift <= resume_after_ms:
                continue
            yield time_ms + shift, (event if k == 0 else _shifted(event, shift, k))
        if not loop:
            return
        k += 1


def _resume_time(event: SourceEvent, time_ms: int) -> int:
    # A bar covers its whole minute: it is "after" the resume point only if its minute is.
    if isinstance(event, BarEvent):
        return event.bar.time_ms + MINUTE_MS - 1
    if isinstance(event, TradeEvent):
        return event.trade.time_ms
    return time_ms


def _shifted(event: SourceEvent, shift: int, k: int) -> SourceEvent:
    if isinstance(event, TradeEvent):
        trade = event.trade
        return TradeEvent(
            event.symbol, Trade(trade.time_ms + shift, f"{trade.trade_id}:{k}", trade.price, trade.amount)
        )
    if isinstance(event, BarEvent):
        bar = replace(event.bar, time_ms=event.bar.time_ms + shift)
        return BarEvent(event.symbol, bar, event.final)
    if isinstance(event, KlineEvent):
        return KlineEvent(event.symbol, replace(event.bar, time_ms=event.bar.time_ms + shift))
    return event


@dataclass
class ReplaySource(Source):
    """Streams recordings (symbol -> file) merged in time order, paced by `speed`.

    Clock events close bars when the recording's clock passes a minute boundary by `clock_lag_ms`
    (live sources wait a little for stragglers the same way).
    """

    recordings: Mapping[str, Path]
    speed: float = 60.0
    loop: bool = False
    clock_lag_ms: int = 0
    exchange: str = "binance"
    name: str = "replay"
    _cache: dict[tuple[Path, str], list[Timed]] = field(default_factory=dict, repr=False)

    async def stream(self, symbols: Mapping[str, int | None]) -> AsyncGenerator[SourceEvent, None]:
        self.health.state = "streaming"
        merged = heapq.merge(
            *(
                _looped(self._events(symbol), resume, self.loop)
                for symbol, resume in symbols.items()
                if symbol in self.recordings
            ),
            key=lambda item: item[0],
        )
        pace = _Pacer(self.speed)
        lag = self.clock_lag_ms
        next_clock: int | None = None
        for time_ms, event in merged:
            if next_clock is None:
                next_clock = time_ms - time_ms % MINUTE_MS + MINUTE_MS + lag
            elif time_ms >= next_clock:
                # Tell the collector the minute is over when the recording's clock says so, not when
                # the next trade of each instrument happens to arrive: a quiet market still closes bars.
                boundary = next_clock - lag
                await pace.until(next_clock)
                yield ClockEvent(boundary)
                next_clock = (time_ms - lag) - (time_ms - lag) % MINUTE_MS + MINUTE_MS + lag
            await pace.until(time_ms)
            self.health.received()
            yield event
        if next_clock is not None:
            await pace.until(next_clock)
            yield ClockEvent(next_clock - lag)
        self.health.state = "stopped"

    def _events(self, symbol: str) -> list[Timed]:
        path = self.recordings[symbol]
        key = (path, symbol)
        if key not in self._cache:
            self._cache[key] = self._load(path, symbol)
        return self._cache[key]

    def _load(self, path: Path, symbol: str) -> list[Timed]:
        kind = recording_kind(path)
        if kind == "trades":
            return [(t.time_ms, TradeEvent(symbol, t)) for t in read_trades(path)]
        if kind == "ohlcv":
            return [(bar.time_ms + MINUTE_MS, BarEvent(symbol, bar, True)) for bar in read_ohlcv(path)]
        return cryptofeed_events(path, symbol, self.health)


def cryptofeed_events(path: Path, symbol: str, health: SourceHealth) -> list[Timed]:
    """The events a live Binance adapter subscribed to `symbol` would have made of the recording,
    timed by the exchange's event time (E)."""
    from market.sources.binance import BinanceParser

    url, messages = read_cryptofeed(path)
    if "binance" not in url:
        raise ValueError(f"{path}: only Binance recordings can be replayed (this one is {url or 'unknown'})")
    parser = BinanceParser(health)
    parser.track(symbol)
    events: list[Timed] = []
    lower = symbol.replace("/", "").lower()
    subscribed = (f'"stream":"{lower}@aggTrade"', f'"stream":"{lower}@kline_1m"')
    for message in messages:
        head = message.raw[:64]
        if not (subscribed[0] in head or subscribed[1] in head):
            continue  # another symbol's stream, or depth and book updates: not subscribed
        event, _ = parser.parse(message.raw)
        if event is not None:
            source_ms = parser.clock.source_ms
            events.append((source_ms if source_ms > 0 else message.received_ms, event))
    return events


class _Pacer:
    """Sleeps so that recorded time advances `speed` times faster than the wall clock."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self.origin: tuple[float, int] | None = None
        self.yield_every = 1000
        self.calls = 0

    async def until(self, recorded_ms: int) -> None:
        if self.speed <= 0:
            # As fast as possible, but let the event loop run other tasks now and then.
            self.calls += 1
            if self.calls % self.yield_every == 0:
                await asyncio.sleep(0)
            return
        now = time.monotonic()
        if self.origin is None:
            self.origin = (now, recorded_ms)
            return
        wall0, recorded0 = self.origin
        delay = wall0 + (recorded_ms - recorded0) / 1000 / self.speed - now
        if delay > 0:
            await asyncio.sleep(delay)

"""Replay of recorded real trades as if they were live: the demo source and a test source.

Recordings are freqtrade trade files (`[timestamp_ms, id, type, side, price, amount, cost]` rows as
`.json`, `.json.gz`, `.feather` or `.parquet`). Time is kept as recorded, scaled by `speed`
(60 = a recorded minute per second, 0 = as fast as possible). With `loop`, the recording repeats
shifted by whole days, so time keeps moving forward and minute/day boundaries stay where they were;
trade ids get a loop suffix so that deduplication does not swallow the repeats.
"""

from __future__ import annotations

import asyncio
import gzip
import heapq
import json
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from market.bars import MINUTE_MS, Trade
from market.sources.base import ClockEvent, Source, SourceEvent, TradeEvent

DAY_MS = 86_400_000


def read_trades(path: Path) -> list[Trade]:
    """Trades of a freqtrade trades file, in file order."""
    name = path.name
    if name.endswith((".json", ".json.gz")):
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "rt") as handle:
            rows = json.load(handle)
        return [Trade(int(r[0]), str(r[1]), float(r[4]), float(r[5])) for r in rows]
    if name.endswith(".feather"):
        frame = pd.read_feather(path)
    elif name.endswith(".parquet"):
        frame = pd.read_parquet(path)
    else:
        raise ValueError(f"{path}: not a trades recording (.json, .json.gz, .feather or .parquet)")
    return [
        Trade(int(t), str(i), float(p), float(a))
        for t, i, p, a in zip(frame["timestamp"], frame["id"], frame["price"], frame["amount"], strict=True)
    ]


def loop_period_ms(trades: list[Trade]) -> int:
    """The shift between two loops: the recording's span rounded up to whole days."""
    span = trades[-1].time_ms - trades[0].time_ms + 1
    return -(-span // DAY_MS) * DAY_MS


def looped_trades(trades: list[Trade], *, resume_after_ms: int | None, loop: bool) -> Iterator[Trade]:
    """The recording from just after `resume_after_ms`, repeated day-aligned if `loop`."""
    if not trades:
        return
    period = loop_period_ms(trades)
    last = trades[-1].time_ms
    first_loop = 0
    if resume_after_ms is not None and loop:
        first_loop = max(0, -(-(resume_after_ms - last) // period))
    k = first_loop
    while True:
        shift = k * period
        for trade in trades:
            moved = trade.time_ms + shift
            if resume_after_ms is not None and moved <= resume_after_ms:
                continue
            trade_id = trade.trade_id if k == 0 else f"{trade.trade_id}:{k}"
            yield Trade(moved, trade_id, trade.price, trade.amount)
        if not loop:
            return
        k += 1


@dataclass
class ReplaySource(Source):
    """Streams recordings (symbol -> file) merged in time order, paced by `speed`."""

    recordings: Mapping[str, Path]
    speed: float = 60.0
    loop: bool = False
    exchange: str = "binance"
    name: str = "replay"
    _cache: dict[Path, list[Trade]] = field(default_factory=dict, repr=False)

    async def stream(self, symbols: Mapping[str, int | None]) -> AsyncIterator[SourceEvent]:
        merged = heapq.merge(
            *(self._tagged(symbol, resume) for symbol, resume in symbols.items() if symbol in self.recordings),
            key=lambda item: item[1].time_ms,
        )
        pace = _Pacer(self.speed)
        last_ms: int | None = None
        for symbol, trade in merged:
            if last_ms is not None and trade.time_ms // MINUTE_MS > last_ms // MINUTE_MS:
                # Tell the collector the minute is over when the recording's clock says so, not when
                # the next trade happens to arrive: a quiet market still closes its bars on time.
                boundary = (last_ms // MINUTE_MS + 1) * MINUTE_MS
                await pace.until(boundary)
                yield ClockEvent(boundary)
            await pace.until(trade.time_ms)
            last_ms = trade.time_ms
            yield TradeEvent(symbol, trade)
        if last_ms is not None:
            boundary = (last_ms // MINUTE_MS + 1) * MINUTE_MS
            await pace.until(boundary)
            yield ClockEvent(boundary)

    def _tagged(self, symbol: str, resume_after_ms: int | None) -> Iterator[tuple[str, Trade]]:
        path = self.recordings[symbol]
        if path not in self._cache:
            self._cache[path] = read_trades(path)
        for trade in looped_trades(self._cache[path], resume_after_ms=resume_after_ms, loop=self.loop):
            yield symbol, trade


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

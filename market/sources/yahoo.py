"""Yahoo Finance: 1m bars of stocks, indices and FX by polling yfinance (delayed for many exchanges).

Yahoo has no trade feed for us, only bars, so this source yields `BarEvent`s: every poll asks for
the recent 1m bars and `PollState.update` turns them into events without double counting. Bars
overlap from one poll to the next; a bar is emitted as final once, when it is over (a later bar
exists, or Yahoo's clock `regularMarketTime` has passed its end); the running minute is emitted as a
partial bar while it changes; a final bar that Yahoo revises within `revise_minutes` (it does fix
recent volumes) is emitted again as a correction. Values are taken as Yahoo gives them, never added
up across polls. Minutes without trades have no row (yfinance drops Yahoo's empty rows), so they
produce no bar, as everywhere else.

Pointing yfinance at a local server: yfinance builds the chart URL from `_BASE_URL_`, which
`yfinance.scrapers.history` imports by value (patching `yfinance.const` changes nothing), and its
cookie and crumb requests use literal URLs in `yfinance.data` (`https://fc.yahoo.com`,
`https://query1.finance.yahoo.com/v1/test/getcrumb`, consent.yahoo.com). Constants cannot redirect
those. With `base_url` set, the adapter gives yfinance a requests `Session` (a session type yfinance
supports) that sends each request for a `*.yahoo.com` host to `base_url` with the same path and
query, so yfinance's own URL building, cookie/crumb dance and parsing run unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import math
import warnings
from collections.abc import AsyncGenerator, Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pandas as pd
import requests

from market.bars import MINUTE_MS, MinuteBar
from market.sources.base import BarEvent, SourceEvent, SourceHealth
from market.sources.resilience import ReconnectingSource, RetryPolicy, SourceUnavailable

log = logging.getLogger(__name__)


class RoutedSession(requests.Session):
    """Sends requests for Yahoo's hosts to `base_url` (same path and query); the original host goes
    along in `X-Yahoo-Host` so one local server can play all of them."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        method = method if isinstance(method, str) else method.decode()
        parts = urlsplit(url if isinstance(url, str) else url.decode())
        if parts.hostname and parts.hostname.endswith("yahoo.com"):
            url = f"{self.base_url}{parts.path or '/'}" + (f"?{parts.query}" if parts.query else "")
            kwargs["headers"] = {**(kwargs.get("headers") or {}), "X-Yahoo-Host": parts.hostname}
        return super().request(method, url, *args, **kwargs)


def bar_problem(bar: MinuteBar) -> str | None:
    values = (bar.open, bar.high, bar.low, bar.close, bar.volume)
    if any(math.isnan(value) or math.isinf(value) for value in values):
        return "not a number"
    if bar.low <= 0:
        return "price not positive"
    if not (bar.low <= min(bar.open, bar.close) and max(bar.open, bar.close) <= bar.high):
        return "open or close outside low..high"
    if bar.volume < 0:
        return "negative volume"
    if bar.time_ms % MINUTE_MS:
        return "not on a minute"
    return None


@dataclass
class PollState:
    """What the earlier polls of one symbol delivered. Pure."""

    revise_minutes: int = 10
    finals: dict[int, tuple[float, ...]] = field(default_factory=dict)  # minute -> values emitted final
    last_final_ms: int = -1
    partial: tuple[int, tuple[float, ...]] | None = None
    corrections: int = 0

    def update(self, bars: Iterable[MinuteBar], source_now_ms: int) -> list[tuple[MinuteBar, bool]]:
        """(bar, final) for what is new or changed in this poll's bars."""
        by_minute = {bar.time_ms: bar for bar in bars}
        if not by_minute:
            return []
        newest = max(by_minute)
        horizon = self.last_final_ms - self.revise_minutes * MINUTE_MS
        out: list[tuple[MinuteBar, bool]] = []
        for minute in sorted(by_minute):
            bar = by_minute[minute]
            values = (bar.open, bar.high, bar.low, bar.close, bar.volume)
            if minute < newest or minute + MINUTE_MS <= source_now_ms:
                if minute < horizon:
                    continue  # final long ago; too old to be revised
                previous = self.finals.get(minute)
                if previous == values:
                    continue  # seen in an earlier poll, unchanged: not again
                if previous is not None:
                    self.corrections += 1
                self.finals[minute] = values
                self.last_final_ms = max(self.last_final_ms, minute)
                out.append((bar, True))
            elif self.partial != (minute, values):
                self.partial = (minute, values)
                out.append((bar, False))
        horizon = self.last_final_ms - self.revise_minutes * MINUTE_MS
        for minute in [minute for minute in self.finals if minute < horizon]:
            del self.finals[minute]
        return out

    def next_start_ms(self) -> int | None:
        """Where the next poll starts: far enough back to see revisions of recent finals."""
        if self.last_final_ms < 0:
            return None
        return self.last_final_ms - self.revise_minutes * MINUTE_MS


def bars_from_frame(frame: pd.DataFrame) -> list[MinuteBar]:
    """yfinance's history DataFrame (Open, High, Low, Close, Volume; tz-aware index) as bars."""
    times = pd.DatetimeIndex(frame.index).tz_convert("UTC").as_unit("ms").asi8.tolist() if len(frame) else []
    columns = [frame[name].astype(float).tolist() for name in ("Open", "High", "Low", "Close", "Volume")]
    return [
        MinuteBar(time_ms, o, h, low, c, v, 0, 0.0, time_ms, time_ms)
        for time_ms, o, h, low, c, v in zip(times, *columns, strict=True)
    ]


class NoData(Exception):
    """Yahoo has no data for the symbol (unknown, delisted): not a connection problem."""


@dataclass
class YahooSource(ReconnectingSource):
    base_url: str = ""  # empty: Yahoo itself, through yfinance's own session
    poll_seconds: float = 60.0
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    calendar: str | None = None
    revise_minutes: int = 10
    name: str = "yahoo"
    exchange: str = "yahoo"

    def __post_init__(self) -> None:
        self.health.breaker = self.policy.breaker()
        self.states: dict[str, PollState] = {}

    async def _session(self, reconnect: bool) -> AsyncGenerator[SourceEvent, None]:
        subscription = self.subscription
        while True:
            version = subscription.version
            for symbol in list(subscription):
                for event in await self.poll(symbol, subscription.get(symbol)):
                    yield event
            self.health.state = "streaming" if subscription else "idle"
            with suppress(TimeoutError):
                async with asyncio.timeout(self.poll_seconds):
                    await subscription.wait_changed(version)

    async def poll(self, symbol: str, resume_after_ms: int | None = None) -> list[SourceEvent]:
        """One poll of one symbol: its new or changed bars as events."""
        state = self.states.setdefault(symbol, PollState(self.revise_minutes))
        start_ms = state.next_start_ms()
        if start_ms is None and resume_after_ms is not None:
            start_ms = resume_after_ms + 1 - (resume_after_ms + 1) % MINUTE_MS
        try:
            frame, source_now_ms = await asyncio.to_thread(self._fetch, symbol, start_ms)
        except NoData as exc:
            self.health.reject("no data from Yahoo", f"{symbol}: {exc}")
            return []
        self.health.received()
        events: list[SourceEvent] = []
        for bar, final in state.update(self._valid(symbol, bars_from_frame(frame), self.health), source_now_ms):
            events.append(BarEvent(symbol, bar, final))
        return events

    @staticmethod
    def _valid(symbol: str, bars: list[MinuteBar], health: SourceHealth) -> list[MinuteBar]:
        valid = []
        for bar in bars:
            problem = bar_problem(bar)
            if problem is None:
                valid.append(bar)
            else:
                health.reject(f"bar from Yahoo: {problem}", f"{symbol} {bar}")
        return valid

    def _fetch(self, symbol: str, start_ms: int | None) -> tuple[pd.DataFrame, int]:
        """The 1m bars since `start_ms` (the latest day's without), and Yahoo's clock. In a thread."""
        import yfinance
        from yfinance import exceptions

        session = RoutedSession(self.base_url) if self.base_url else None
        ticker = yfinance.Ticker(symbol, session=session)
        window: dict[str, Any] = (
            {"period": "1d"} if start_ms is None else {"start": pd.Timestamp(start_ms, unit="ms", tz="UTC")}
        )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # raise_errors: per call, not global
                frame = ticker.history(interval="1m", auto_adjust=False, actions=False, raise_errors=True, **window)
        except exceptions.YFRateLimitError as exc:
            raise SourceUnavailable("Yahoo rate limited the poll (HTTP 429)") from exc
        except (exceptions.YFPricesMissingError, exceptions.YFTzMissingError) as exc:
            raise NoData(str(exc)) from exc
        except Exception as exc:
            if getattr(getattr(exc, "response", None), "status_code", None) == 404:
                raise NoData(str(exc)) from exc  # an unknown symbol: Yahoo answers 404

            raise SourceUnavailable(f"poll of {symbol} failed: {exc.__class__.__name__}: {exc}") from exc
        market_time = ticker.history_metadata.get("regularMarketTime")
        source_now = int(pd.Timestamp(market_time).value // 1_000_000) if market_time is not None else -1
        return frame, source_now

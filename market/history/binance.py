"""Binance klines through ccxt's `fetch_ohlcv`.

ccxt needs the market list to map `BTC/USDT` to Binance's `BTCUSDT`: `load_markets` reads the spot
`/api/v3/exchangeInfo` only (not futures or options). A base URL other than Binance's own moves every
REST endpoint of ccxt's binance class to it (tests serve klines from 127.0.0.1).

Paging: `since` = the page start, `until` = the end of the span; Binance returns at most 1,000
klines from `startTime` on. A full page continues after its last bar; a shorter one ends the span
(there is nothing more up to `endTime`). Bars are Binance's: UTC-aligned for every timeframe.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from market.history.base import BarPage, HistoryBar, HistoryClient, HistoryError, TransientHistoryError
from market.timeframes import TIMEFRAMES, parse_timeframe

BINANCE_API = "https://api.binance.com"
PAGE_SIZE = 1000


class BinanceHistory(HistoryClient):
    name = "binance"
    timeframes = frozenset(TIMEFRAMES)

    def __init__(self, *, base_url: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        import ccxt

        self.ccxt = ccxt
        self.exchange = ccxt.binance(
            {
                "enableRateLimit": True,
                "options": {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False},
            }
        )
        if base_url and base_url.rstrip("/") != BINANCE_API:
            self._point_at(base_url.rstrip("/"))

    def _point_at(self, base_url: str) -> None:
        api = self.exchange.urls["api"]
        for key, url in api.items():
            if isinstance(url, str) and url.startswith(BINANCE_API):
                api[key] = base_url + url.removeprefix(BINANCE_API)

    def fetch_page(self, symbol: str, timeframe: str, start: datetime, end: datetime, token: str) -> BarPage:
        try:
            rows = self.exchange.fetch_ohlcv(
                symbol, timeframe, since=_ms(start), limit=PAGE_SIZE, params={"until": _ms(end) - 1}
            )
        except self.ccxt.NetworkError as exc:  # timeouts, 429/418 (RateLimitExceeded, DDoSProtection), 5xx
            raise TransientHistoryError(f"{exc.__class__.__name__}: {exc}") from exc
        except self.ccxt.BaseError as exc:
            raise HistoryError(f"{exc.__class__.__name__}: {exc}") from exc
        bars = [
            HistoryBar(datetime.fromtimestamp(time_ms / 1000, UTC), float(o), float(h), float(low), float(c), float(v))
            for time_ms, o, h, low, c, v in rows
        ]
        if len(rows) < PAGE_SIZE or not bars:
            return BarPage(bars, None)
        next_start = bars[-1].time + parse_timeframe(timeframe)
        return BarPage(bars, next_start if next_start < end else None)


def _ms(moment: datetime) -> int:
    return int((moment - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(milliseconds=1))

"""Binance USDⓈ-M futures klines: `GET /fapi/v1/klines` on fapi.binance.com.

Not through ccxt (as the spot client is): ccxt's `binanceusdm` loads the whole futures
`/fapi/v1/exchangeInfo` before its first klines request and names the contracts `SUSHI/USDT:USDT`,
while the instruments of the exchange `binance-futures` are `SUSHI/USDT` (the SUSHIUSDT perpetual,
as the live collector names them). The endpoint is one GET with the spot klines' row shape
`[open time, open, high, low, close, volume, close time, quote volume, trades, ...]`.

Paging: `startTime` = the page start, `endTime` = the end of the span minus 1 ms; Binance returns at
most `limit` (1,500) klines from `startTime` on. A full page continues after its last bar; a shorter
one ends the span. A kline of a minute that is still running is left out (not closed yet).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from market.history.base import BarPage, HistoryBar, HistoryClient, HistoryError, TransientHistoryError
from market.timeframes import TIMEFRAMES, parse_timeframe

FAPI = "https://fapi.binance.com"
PAGE_SIZE = 1500  # the most klines one fapi request returns


def exchange_symbol(symbol: str) -> str:
    """`SUSHI/USDT` -> `SUSHIUSDT` (the perpetual)."""
    return symbol.replace("/", "").upper()


class BinanceFuturesHistory(HistoryClient):
    name = "binance-futures"
    timeframes = frozenset(TIMEFRAMES)  # Binance has every one of ours, UTC-aligned

    def __init__(self, *, base_url: str = "", timeout: float = 30.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.base_url = (base_url or FAPI).rstrip("/")
        self.timeout = timeout
        self.http = requests.Session()

    def fetch_page(self, symbol: str, timeframe: str, start: datetime, end: datetime, token: str) -> BarPage:
        params: dict[str, str | int] = {
            "symbol": exchange_symbol(symbol),
            "interval": timeframe,
            "startTime": _ms(start),
            "endTime": _ms(end) - 1,
            "limit": PAGE_SIZE,
        }
        rows = self._get("/fapi/v1/klines", params)
        step = parse_timeframe(timeframe)
        server_now = datetime.now(UTC)
        try:
            bars = [
                HistoryBar(
                    datetime.fromtimestamp(row[0] / 1000, UTC),
                    float(row[1]),
                    float(row[2]),
                    float(row[3]),
                    float(row[4]),
                    float(row[5]),
                    trades=int(row[8]),
                    vwap=float(row[7]) / float(row[5]) if float(row[5]) > 0 else None,
                )
                for row in rows
            ]
        except (IndexError, TypeError, ValueError) as exc:
            raise HistoryError(f"fapi klines answered rows of an unexpected shape: {str(rows)[:200]}") from exc
        complete = [bar for bar in bars if bar.time + step <= server_now]
        if len(rows) < PAGE_SIZE or not bars:
            return BarPage(complete, None)
        next_start = bars[-1].time + step
        return BarPage(complete, next_start if next_start < end else None)

    def _get(self, path: str, params: dict[str, str | int]) -> list[Any]:
        try:
            response = self.http.get(f"{self.base_url}{path}", params=params, timeout=self.timeout)
        except requests.RequestException as exc:
            raise TransientHistoryError(f"{exc.__class__.__name__}: {exc}") from exc
        if response.status_code in (418, 429) or response.status_code >= 500:
            raise TransientHistoryError(f"{path} answered HTTP {response.status_code}: {response.text[:200]}")
        if response.status_code != 200:
            # 400 with {"code": -1121, "msg": "Invalid symbol."} and the like: trying again will not help
            raise HistoryError(f"{path} answered HTTP {response.status_code}: {response.text[:200]}")
        try:
            body = response.json()
        except ValueError as exc:
            raise TransientHistoryError(f"{path} answered something that is not JSON: {response.text[:200]}") from exc
        if not isinstance(body, list):
            raise HistoryError(f"{path} answered {str(body)[:200]}")
        return body


def _ms(moment: datetime) -> int:
    return int((moment - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(milliseconds=1))

"""Local HTTP servers that answer like the history APIs, for the backfill tests (sync, in a thread).

- `binance_handler`: Binance's `GET /api/v3/klines` (12-field arrays, prices as strings, at most
  `limit` klines with open time in [startTime, endTime]) serving a real freqtrade OHLCV file, and
  the spot `GET /api/v3/exchangeInfo` that ccxt's `load_markets` reads.
- `alpaca_handler`: alpaca-py's recorded response bodies (sample_data/alpaca-py/), chosen by path and
  `page_token`.
- `yahoo_handler`: the cookie, crumb and chart endpoints yfinance calls, the chart in Yahoo's shape
  built from real candles (no recorded Yahoo chart response exists in the shared data).

Every request is recorded (path and query) for the tests to check what was asked for.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pandas as pd

Reply = tuple[int, bytes, str]  # status, body, content type
Handler = Callable[[str, dict[str, str]], Reply]


def json_reply(body: Any, status: int = 200) -> Reply:
    return status, json.dumps(body).encode(), "application/json"


@dataclass
class LocalServer:
    handler: Handler
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    url: str = ""

    def __enter__(self) -> LocalServer:
        server = self

        class RequestHandler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = dict(parse_qsl(parts.query))
                server.requests.append((parts.path, query))
                status, body, content_type = server.handler(parts.path, query)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), RequestHandler)
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join()

    def paths(self, path: str) -> list[dict[str, str]]:
        return [query for requested, query in self.requests if requested == path]


# --- Binance ---------------------------------------------------------------------------------------


def exchange_info(symbol: str, base: str, quote: str) -> dict[str, Any]:
    """A spot exchangeInfo with one symbol, in the shape Binance answers (as ccxt documents it)."""
    return {
        "timezone": "UTC",
        "serverTime": 1570924800000,
        "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 1200}],
        "exchangeFilters": [],
        "symbols": [
            {
                "symbol": symbol,
                "status": "TRADING",
                "baseAsset": base,
                "baseAssetPrecision": 8,
                "quoteAsset": quote,
                "quotePrecision": 8,
                "quoteAssetPrecision": 8,
                "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
                "icebergAllowed": True,
                "ocoAllowed": True,
                "isSpotTradingAllowed": True,
                "isMarginTradingAllowed": False,
                "filters": [
                    {
                        "filterType": "PRICE_FILTER",
                        "minPrice": "0.00000001",
                        "maxPrice": "1000.00000000",
                        "tickSize": "0.00000001",
                    },
                    {
                        "filterType": "LOT_SIZE",
                        "minQty": "1.00000000",
                        "maxQty": "90000000.00000000",
                        "stepSize": "1.00000000",
                    },
                ],
                "permissions": ["SPOT"],
            }
        ],
    }


def binance_handler(
    candles: pd.DataFrame,
    symbol: str,
    base: str,
    quote: str,
    *,
    interval: str = "1m",
    failures: list[int] | None = None,
) -> Handler:
    """Klines of `candles` (freqtrade columns: date, open, high, low, close, volume) for `symbol`.

    `failures`: statuses answered, one per klines request, before the real answers (e.g. 429).
    """
    pending = list(failures or [])
    times = candles["date"].map(lambda t: int(t.timestamp() * 1000))
    step_ms = (
        int((candles["date"].iloc[1] - candles["date"].iloc[0]).total_seconds() * 1000) if len(candles) > 1 else 60_000
    )

    def handle(path: str, query: dict[str, str]) -> Reply:
        if path == "/api/v3/exchangeInfo":
            return json_reply(exchange_info(symbol, base, quote))
        if path != "/api/v3/klines":
            return json_reply({"code": -1, "msg": f"no route {path}"}, 404)
        if pending:
            return json_reply({"code": -1003, "msg": "Too many requests."}, pending.pop(0))
        if query.get("symbol") != symbol:
            return json_reply({"code": -1121, "msg": "Invalid symbol."}, 400)
        if query.get("interval") != interval:
            return json_reply([])  # only the file's own timeframe is served
        start = int(query.get("startTime", 0))
        end = int(query.get("endTime", 2**62))
        limit = int(query.get("limit", 500))
        chosen = candles[(times >= start) & (times <= end)].head(limit)
        rows = [
            [
                int(t.timestamp() * 1000),
                repr(o),
                repr(h),
                repr(low),
                repr(c),
                repr(v),
                int(t.timestamp() * 1000) + step_ms - 1,
                repr(v * c),
                0,
                "0",
                "0",
                "0",
            ]
            for t, o, h, low, c, v in chosen[["date", "open", "high", "low", "close", "volume"]].itertuples(index=False)
        ]
        return json_reply(rows)

    return handle


# --- Alpaca ----------------------------------------------------------------------------------------


def alpaca_handler(directory: Path, routes: dict[tuple[str, str], str]) -> Handler:
    """Recorded bodies by (path, page_token or ""); anything else is Alpaca's 404."""

    def handle(path: str, query: dict[str, str]) -> Reply:
        name = routes.get((path, query.get("page_token", "")))
        if name is None:
            return json_reply({"code": 40410000, "message": "endpoint not found"}, 404)
        return 200, (directory / name).read_bytes(), "application/json"

    return handle


# --- Yahoo -----------------------------------------------------------------------------------------


def yahoo_handler(symbol: str, candles: pd.DataFrame, *, timezone: str = "UTC") -> Handler:
    """yfinance's cookie, crumb and chart requests; the chart from `candles` (freqtrade columns)."""

    def chart(query: dict[str, str]) -> Reply:
        start, end = int(query.get("period1", 0)), int(query.get("period2", 2**40))
        epoch = candles["date"].map(lambda t: int(t.timestamp()))
        rows = candles[(epoch >= start) & (epoch < end)]
        stamps = [int(t.timestamp()) for t in rows["date"]]
        last = stamps[-1] if stamps else start
        day = last - last % 86_400
        period = {"timezone": timezone, "start": day, "end": day + 86_400, "gmtoffset": 0}
        meta = {
            "currency": "USD",
            "symbol": symbol,
            "exchangeName": "CCC",
            "fullExchangeName": "CCC",
            "instrumentType": "CRYPTOCURRENCY",
            "firstTradeDate": 1410912000,
            "regularMarketTime": last,
            "hasPrePostMarketData": False,
            "gmtoffset": 0,
            "timezone": timezone,
            "exchangeTimezoneName": timezone,
            "priceHint": 2,
            "currentTradingPeriod": dict.fromkeys(("pre", "regular", "post"), period),
            "dataGranularity": query.get("interval", "1m"),
            "range": "",
            "validRanges": ["1d", "5d", "1mo", "3mo", "6mo", "1y", "2y", "5y", "10y", "ytd", "max"],
            "tradingPeriods": [
                [{**period, "start": d, "end": d + 86_400}] for d in sorted({s - s % 86_400 for s in stamps})
            ],
        }
        result: dict[str, Any] = {"meta": meta, "indicators": {"quote": [{}]}}
        if stamps:
            result["timestamp"] = stamps
            result["indicators"] = {
                "quote": [{name: rows[name].tolist() for name in ("open", "high", "low", "close", "volume")}]
            }
        return json_reply({"chart": {"result": [result], "error": None}})

    def handle(path: str, query: dict[str, str]) -> Reply:
        if path == "/v1/test/getcrumb":
            return 200, b"test-crumb", "text/plain"
        if path == f"/v8/finance/chart/{symbol}":
            return chart(query)
        if path.startswith("/v8/finance/chart/"):
            body = {"chart": {"result": None, "error": {"code": "Not Found", "description": "No data found"}}}
            return json_reply(body, 404)
        return 404, b"", "text/plain"  # the cookie page: yfinance only wants the Set-Cookie header

    return handle

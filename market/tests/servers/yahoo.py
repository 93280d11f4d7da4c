"""A local Yahoo Finance for yfinance: the cookie (fc.yahoo.com), the crumb
(/v1/test/getcrumb) and the chart API (/v8/finance/chart/<symbol>) in Yahoo's response shape.

No recording of a Yahoo chart response exists in the shared data, so the chart is built in Yahoo's
shape (the fields yfinance reads: meta with exchangeTimezoneName, regularMarketTime,
tradingPeriods and currentTradingPeriod; timestamp; indicators.quote) from real 1m candles: the 500
Binance BTC/USDT candles of 2023-05-08 in frequi's test data, served as Yahoo's BTC-USD (24/7, time
zone UTC). Yahoo states crypto volume in US dollars as an integer, so the served volume is
round(base volume x close).
yfinance parsing these responses is part of what the tests check.

The market has a clock: the candles before it are over; the candle of the minute the clock is in is
served as Yahoo serves the running minute, incomplete (its open for every price so far, half its
volume). Each chart request moves the clock by `step_ms`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aiohttp import web

from market.bars import MINUTE_MS
from market.tests.servers.http import LocalHttpServer

DAY_S = 86_400


def load_candles(path: Path) -> list[list[Any]]:
    """[time_ms, open, high, low, close, volume in USD] from frequi's candle payload."""
    body = json.loads(path.read_text())
    column = {name: index for index, name in enumerate(body["columns"])}
    return [
        [
            int(row[column["__date_ts"]]),
            *(float(row[column[name]]) for name in ("open", "high", "low", "close")),
            float(round(row[column["volume"]] * row[column["close"]])),
        ]
        for row in body["data"]
    ]


class YahooServer:
    def __init__(
        self, symbol: str, candles: list[list[Any]], *, clock_ms: int, step_ms: int, faults: list[int] | None = None
    ) -> None:
        self.symbol = symbol
        self.candles = candles
        self.clock_ms = clock_ms
        self.step_ms = step_ms
        self.faults = list(faults or [])
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.chart_requests = 0
        self._http = LocalHttpServer(self._app())
        self.url = ""

    async def __aenter__(self) -> YahooServer:
        self.url = await self._http.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.stop()

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self._cookie)
        app.router.add_get("/v1/test/getcrumb", self._crumb)
        app.router.add_get("/v8/finance/chart/{symbol}", self._chart)
        return app

    async def _cookie(self, request: web.Request) -> web.Response:
        self.requests.append((request.headers.get("X-Yahoo-Host", ""), dict(request.query)))
        response = web.Response(status=404, text="")
        response.set_cookie("A3", "d=test&S=test", max_age=3600 * 24 * 365, path="/")
        return response

    async def _crumb(self, request: web.Request) -> web.Response:
        self.requests.append((request.headers.get("X-Yahoo-Host", ""), dict(request.query)))
        return web.Response(text="test-crumb")

    async def _chart(self, request: web.Request) -> web.Response:
        query = dict(request.query)
        self.requests.append((request.headers.get("X-Yahoo-Host", ""), query))
        if request.match_info["symbol"] != self.symbol:
            body = {
                "chart": {
                    "result": None,
                    "error": {"code": "Not Found", "description": "No data found, symbol may be delisted"},
                }
            }
            return web.json_response(body, status=404)
        if query.get("interval") == "1d":  # yfinance asking for the time zone only
            return web.json_response(self._chart_body([], daily=True))
        self.chart_requests += 1
        if self.faults:
            status = self.faults.pop(0)
            return web.Response(status=status, text="<html>Will be right back...</html>", content_type="text/html")
        self.clock_ms += self.step_ms
        if "period1" in query:
            start, end = int(query["period1"]) * 1000, int(query["period2"]) * 1000
        else:  # range=1d: the clock's day
            start = self.clock_ms - self.clock_ms % (DAY_S * 1000)
            end = start + DAY_S * 1000
        rows = []
        for time_ms, o, h, low, c, v in self.candles:
            if time_ms > self.clock_ms or not start <= time_ms < end:
                continue
            if time_ms + MINUTE_MS > self.clock_ms:  # the running minute, incomplete
                rows.append([time_ms, o, o, o, o, float(v // 2)])
            else:
                rows.append([time_ms, o, h, low, c, v])
        return web.json_response(self._chart_body(rows))

    def _chart_body(self, rows: list[list[float]], *, daily: bool = False) -> dict[str, Any]:
        now_s = self.clock_ms // 1000
        day = now_s - now_s % DAY_S
        days = sorted({int(r[0] // 1000) // DAY_S * DAY_S for r in rows} | {day})
        period = [{"timezone": "UTC", "start": d, "end": d + DAY_S, "gmtoffset": 0} for d in days]
        meta = {
            "currency": "USD",
            "symbol": self.symbol,
            "exchangeName": "CCC",
            "fullExchangeName": "CCC",
            "instrumentType": "CRYPTOCURRENCY",
            "firstTradeDate": 1410912000,
            "regularMarketTime": now_s,  # BTC trades every second: the last trade is "now"
            "hasPrePostMarketData": False,
            "gmtoffset": 0,
            "timezone": "UTC",
            "exchangeTimezoneName": "UTC",
            "regularMarketPrice": rows[-1][4] if rows else None,
            "priceHint": 2,
            "currentTradingPeriod": {
                name: {"timezone": "UTC", "start": day, "end": day + DAY_S, "gmtoffset": 0}
                for name in ("pre", "regular", "post")
            },
            "dataGranularity": "1d" if daily else "1m",
            "range": "",
            "validRanges": ["1d", "5d", "1mo", "3mo", "6mo", "1y", "2y", "5y", "10y", "ytd", "max"],
            "tradingPeriods": [[p] for p in period],
        }
        result: dict[str, Any] = {"meta": meta}
        if rows:
            result["timestamp"] = [int(r[0] // 1000) for r in rows]
            result["indicators"] = {
                "quote": [
                    {
                        "open": [r[1] for r in rows],
                        "high": [r[2] for r in rows],
                        "low": [r[3] for r in rows],
                        "close": [r[4] for r in rows],
                        "volume": [int(r[5]) for r in rows],
                    }
                ]
            }
        else:
            result["indicators"] = {"quote": [{}]}
        return {"chart": {"result": [result], "error": None}}

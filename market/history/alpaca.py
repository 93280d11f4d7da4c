"""Alpaca bars through alpaca-py's historical clients, one page per request, with `next_page_token`.

alpaca-py's `get_stock_bars` would follow every `next_page_token` itself before returning, which
leaves nothing to checkpoint. So the request is built by alpaca-py (`StockBarsRequest`,
`CryptoBarsRequest`: its own field names and formats) and sent through the SDK client's `get`
(its authentication headers, base URL and 429 retries), one page at a time; the token is the
checkpoint. Symbols with a slash (`BTC/USD`) are crypto, the others US stocks.

Alignment: minute and hour bars are UTC-aligned. Daily stock bars are labelled by Alpaca with
midnight New York time (`05:00Z` or `04:00Z`); they are relabelled with their session date at 00:00
UTC, our daily convention. Alpaca's daily crypto bars cover New York days, not UTC days, and its 4h
bars are not aligned with ours: neither is offered (roll them up from 1m or 1h instead).
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from market.history.base import BarPage, HistoryBar, HistoryClient, HistoryError, TransientHistoryError

NEW_YORK = ZoneInfo("America/New_York")
PAGE_SIZE = 10_000
STOCK_TIMEFRAMES = frozenset({"1m", "5m", "15m", "1h", "1d"})
CRYPTO_TIMEFRAMES = frozenset({"1m", "5m", "15m", "1h"})


class AlpacaHistory(HistoryClient):
    name = "alpaca"
    timeframes = STOCK_TIMEFRAMES

    def __init__(
        self,
        *,
        base_url: str = "",
        api_key: str = "",
        secret_key: str = "",
        feed: str = "iex",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.base_url = base_url or None
        self.api_key, self.secret_key = api_key, secret_key
        self.feed = feed
        self._clients: dict[bool, Any] = {}

    def supports(self, symbol: str, timeframe: str) -> str | None:
        if is_crypto(symbol) and timeframe not in CRYPTO_TIMEFRAMES:
            return f"alpaca serves crypto in 1m, 5m, 15m and 1h (UTC-aligned), not {timeframe}"
        return super().supports(symbol, timeframe)

    def fetch_page(self, symbol: str, timeframe: str, start: datetime, end: datetime, token: str) -> BarPage:
        from alpaca.common.exceptions import APIError
        from requests import RequestException

        crypto = is_crypto(symbol)
        path, params = self._request(symbol, timeframe, start, end, crypto)
        if token:
            params["page_token"] = token
        try:
            body = self._client(crypto).get(path, params) or {}
        except APIError as exc:
            status = exc.status_code
            if status is not None and (status == 429 or status >= 500):
                raise TransientHistoryError(f"Alpaca answered {status}: {exc}") from exc
            raise HistoryError(f"Alpaca answered {status}: {exc}") from exc
        except RequestException as exc:
            raise TransientHistoryError(f"{exc.__class__.__name__}: {exc}") from exc
        raw = (body.get("bars") or {}).get(symbol) or []
        bars = [_bar(item, daily=timeframe == "1d") for item in raw]
        next_token = body.get("next_page_token") or ""
        if not next_token:
            return BarPage(bars, None)
        # The token is the checkpoint; the time is only for progress and a token that expired.
        next_start = bars[-1].time if bars else start
        return BarPage(bars, max(next_start, start), next_token)

    def _request(
        self, symbol: str, timeframe: str, start: datetime, end: datetime, crypto: bool
    ) -> tuple[str, dict[str, Any]]:
        from alpaca.data.enums import DataFeed
        from alpaca.data.requests import CryptoBarsRequest, StockBarsRequest

        common: dict[str, Any] = {
            "symbol_or_symbols": symbol,
            "timeframe": _alpaca_timeframe(timeframe),
            "start": start,
            "end": end,
            "limit": PAGE_SIZE,
        }
        if crypto:
            fields = CryptoBarsRequest(**common).to_request_fields()
            return "/crypto/us/bars", fields
        fields = StockBarsRequest(**common, feed=DataFeed(self.feed)).to_request_fields()
        return "/stocks/bars", fields

    def _client(self, crypto: bool) -> Any:
        if crypto not in self._clients:
            from alpaca.data.historical import CryptoHistoricalDataClient, StockHistoricalDataClient

            kind = CryptoHistoricalDataClient if crypto else StockHistoricalDataClient
            try:
                self._clients[crypto] = kind(
                    api_key=self.api_key or None, secret_key=self.secret_key or None, url_override=self.base_url
                )
            except ValueError as exc:  # no or half credentials
                raise HistoryError(f"Alpaca: {exc} (set ALPACA_API_KEY and ALPACA_SECRET_KEY)") from exc
        return self._clients[crypto]


def is_crypto(symbol: str) -> bool:
    return "/" in symbol


def _alpaca_timeframe(timeframe: str) -> Any:
    from alpaca.data.timeframe import TimeFrame, TimeFrameUnit

    unit = {"m": TimeFrameUnit.Minute, "h": TimeFrameUnit.Hour, "d": TimeFrameUnit.Day}[timeframe[-1]]
    return TimeFrame(int(timeframe[:-1]), unit)


def _bar(item: dict[str, Any], *, daily: bool) -> HistoryBar:
    moment = datetime.fromisoformat(item["t"].replace("Z", "+00:00")).astimezone(UTC)
    if daily:  # midnight New York time -> the session date at 00:00 UTC
        moment = datetime.combine(moment.astimezone(NEW_YORK).date(), time(), tzinfo=UTC)
    trades = item.get("n")
    return HistoryBar(
        moment,
        float(item["o"]),
        float(item["h"]),
        float(item["l"]),
        float(item["c"]),
        float(item["v"]),
        None if trades is None else int(trades),
        None if item.get("vw") is None else float(item["vw"]),
    )

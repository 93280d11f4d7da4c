"""Yahoo Finance bars through yfinance's `Ticker.history`, window by window.

Yahoo answers a date range in one response but limits its length by interval (about 7 days of 1m,
60 days of 5m/15m, 730 days of 1h; 1m only for the last 30 days), so a page is one window and the
next page starts where it ended. An empty window (a holiday week) is an empty page, not an error.

Times: intraday bars come in the exchange's time zone and are converted to UTC; daily bars are
labelled with their trading date at 00:00 UTC, our daily convention. 4h is not offered: Yahoo's
hourly bars follow the session (09:30, 10:30, ...) rather than UTC hours, so they do not roll up to
4h buckets either; the roll-up builds 4h from 1m where there are 1m bars.

yfinance's hosts cannot be configured; with `base_url` set, the live source's `RoutedSession` sends
Yahoo's requests (cookie, crumb, chart) there instead, and yfinance runs unchanged.
"""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pandas as pd

from market.history.base import BarPage, HistoryBar, HistoryClient, HistoryError, TransientHistoryError

WINDOWS = {
    "1m": timedelta(days=7),
    "5m": timedelta(days=59),
    "15m": timedelta(days=59),
    "1h": timedelta(days=729),
    "1d": timedelta(days=3650),
}
INTERVALS = {"1m": "1m", "5m": "5m", "15m": "15m", "1h": "60m", "1d": "1d"}


class YahooHistory(HistoryClient):
    name = "yahoo"
    timeframes = frozenset(WINDOWS)

    def __init__(self, *, base_url: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.base_url = base_url

    def fetch_page(self, symbol: str, timeframe: str, start: datetime, end: datetime, token: str) -> BarPage:
        window_end = min(end, start + WINDOWS[timeframe])
        frame = self._history(symbol, timeframe, start, window_end)
        bars = bars_from_history(frame, daily=timeframe == "1d")
        return BarPage(bars, window_end if window_end < end else None)

    def _history(self, symbol: str, timeframe: str, start: datetime, end: datetime) -> pd.DataFrame:
        import yfinance
        from yfinance import exceptions

        from market.sources.yahoo import RoutedSession

        session = RoutedSession(self.base_url) if self.base_url else None
        ticker = yfinance.Ticker(symbol, session=session)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                return ticker.history(
                    start=start,
                    end=end,
                    interval=INTERVALS[timeframe],
                    auto_adjust=False,
                    actions=False,
                    raise_errors=True,
                )
        except exceptions.YFPricesMissingError:
            return pd.DataFrame(columns=["Open", "High", "Low", "Close", "Volume"])
        except exceptions.YFRateLimitError as exc:
            raise TransientHistoryError("Yahoo rate limited the request (HTTP 429)") from exc
        except exceptions.YFException as exc:
            raise HistoryError(f"{exc.__class__.__name__}: {exc}") from exc
        except Exception as exc:
            # yfinance lets HTTP errors through from requests or curl_cffi, both with a `response`.
            status = getattr(getattr(exc, "response", None), "status_code", None)
            if status == 404:
                raise HistoryError(f"Yahoo does not know {symbol!r}") from exc
            if status is not None or _network_error(exc):
                raise TransientHistoryError(f"{exc.__class__.__name__}: {exc}") from exc
            raise HistoryError(f"{exc.__class__.__name__}: {exc}") from exc


def _network_error(exc: Exception) -> bool:
    import requests

    return isinstance(exc, requests.RequestException | ConnectionError | TimeoutError)


def bars_from_history(frame: pd.DataFrame, *, daily: bool) -> list[HistoryBar]:
    """yfinance's DataFrame (Open, High, Low, Close, Volume; tz-aware index) as bars."""
    if frame.empty:
        return []
    index = pd.DatetimeIndex(frame.index)
    if daily:
        times = [datetime.combine(stamp.date(), time(), tzinfo=UTC) for stamp in index]
    else:
        times = [stamp.to_pydatetime() for stamp in index.tz_convert("UTC")]
    columns = [frame[name].astype(float).tolist() for name in ("Open", "High", "Low", "Close", "Volume")]
    return [
        HistoryBar(moment, o, h, low, c, v)
        for moment, o, h, low, c, v in zip(times, *columns, strict=True)
        if not any(pd.isna(value) for value in (o, h, low, c))
    ]

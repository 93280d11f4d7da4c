"""History clients: bars of the past from each source, page by page. Pure: no Django.

One small module per source behind `base.HistoryClient` (normalized `BarPage`s, a capability map of
timeframes, rate limiting and retries in the base class):

- `binance`: ccxt's `fetch_ohlcv` (Binance klines REST);
- `binance-futures`: Binance USDⓈ-M futures klines (`/fapi/v1/klines`);
- `alpaca`: alpaca-py's historical clients, page by page with Alpaca's `next_page_token`;
- `yahoo`: yfinance's `Ticker.history`, window by window.

`manage.py backfill` and the gap-fill task use them through `market.backfill`; the live collectors
can use them for their catch-up. Base URLs are configuration, so tests point them at 127.0.0.1.
"""

from __future__ import annotations

from dataclasses import dataclass

from market.history.base import BarPage, HistoryBar, HistoryClient, HistoryError, TransientHistoryError

HISTORY_SOURCES = ("binance", "binance-futures", "alpaca", "yahoo")

__all__ = [
    "HISTORY_SOURCES",
    "BarPage",
    "HistoryBar",
    "HistoryClient",
    "HistoryConfig",
    "HistoryError",
    "TransientHistoryError",
    "history_client",
]


@dataclass(frozen=True)
class HistoryConfig:
    """Where and how to reach each source (built from settings by `market.backfill`)."""

    binance_url: str = ""
    binance_futures_url: str = ""
    alpaca_url: str = ""
    alpaca_key: str = ""
    alpaca_secret: str = ""
    alpaca_feed: str = "iex"
    yahoo_url: str = ""
    # Seconds between two requests to a source, at least.
    min_interval: float = 0.35


def history_client(source: str, config: HistoryConfig) -> HistoryClient:
    """The client of `source` (one of HISTORY_SOURCES)."""
    if source == "binance":
        from market.history.binance import BinanceHistory

        return BinanceHistory(base_url=config.binance_url, min_interval=config.min_interval)
    if source == "binance-futures":
        from market.history.binance_futures import BinanceFuturesHistory

        return BinanceFuturesHistory(base_url=config.binance_futures_url, min_interval=config.min_interval)
    if source == "alpaca":
        from market.history.alpaca import AlpacaHistory

        return AlpacaHistory(
            base_url=config.alpaca_url,
            api_key=config.alpaca_key,
            secret_key=config.alpaca_secret,
            feed=config.alpaca_feed,
            min_interval=config.min_interval,
        )
    if source == "yahoo":
        from market.history.yahoo import YahooHistory

        return YahooHistory(base_url=config.yahoo_url, min_interval=config.min_interval)
    raise ValueError(f"unknown history source {source!r}; available: {', '.join(HISTORY_SOURCES)}")

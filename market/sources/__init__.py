"""Data sources, one small adapter each behind `market.sources.base.Source`.

| source | what | how | symbols |
|---|---|---|---|
| binance | crypto trades + klines | raw combined websocket stream, REST catch-up | BTC/USDT <-> BTCUSDT |
| binance-futures | USDⓈ-M perpetuals, the same | the same on fstream / fapi | SUSHI/USDT <-> SUSHIUSDT |
| alpaca | US stock trades + minute bars | alpaca-py StockDataStream, REST catch-up | AAPL |
| alpaca-crypto | crypto trades + minute bars | alpaca-py CryptoDataStream, REST catch-up | BTC/USD |
| yahoo | stock, index, FX 1m bars (delayed) | yfinance polls | AAPL, ^GSPC, EURUSD=X |
| replay | recorded trades, bars, raw traffic | files | as recorded |

Adapters import their libraries only when built, so a collector loads only what it uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from market.sources.base import Source
from market.sources.resilience import RetryPolicy

SOURCE_NAMES = ("replay", "binance", "binance-futures", "alpaca", "alpaca-crypto", "yahoo")


@dataclass(frozen=True)
class SourceConfig:
    """Everything the adapters need from settings and the command line, as plain values."""

    policy: RetryPolicy = field(default_factory=RetryPolicy)
    clock_lag_ms: int = 1000
    max_catchup_ms: int = 2 * 3_600_000
    # replay
    speed: float = 60.0
    loop: bool = True
    recordings: Mapping[str, Path] = field(default_factory=dict)
    # binance
    binance_ws_url: str = "wss://stream.binance.com:9443"
    binance_rest_url: str = "https://api.binance.com"
    binance_futures_ws_url: str = "wss://fstream.binance.com"
    binance_futures_rest_url: str = "https://fapi.binance.com"
    # alpaca
    alpaca_api_key: str = ""
    alpaca_secret_key: str = ""
    alpaca_stock_feed: str = "iex"
    alpaca_stock_stream_url: str = ""
    alpaca_crypto_stream_url: str = ""
    alpaca_data_url: str = "https://data.alpaca.markets"
    stock_calendar: str = "XNYS"
    # yahoo
    yahoo_base_url: str = ""
    yahoo_poll_seconds: float = 60.0
    yahoo_calendar: str = ""


def build_source(name: str, config: SourceConfig) -> Source:
    if name == "replay":
        from market.sources.replay import ReplaySource

        return ReplaySource(recordings=config.recordings, speed=config.speed, loop=config.loop)
    if name == "binance":
        from market.sources.binance import BinanceSource

        return BinanceSource(
            ws_url=config.binance_ws_url,
            rest_url=config.binance_rest_url,
            policy=config.policy,
            clock_lag_ms=config.clock_lag_ms,
            max_catchup_ms=config.max_catchup_ms,
        )
    if name == "binance-futures":
        from market.sources.binance import BinanceSource

        return BinanceSource.futures(
            ws_url=config.binance_futures_ws_url,
            rest_url=config.binance_futures_rest_url,
            policy=config.policy,
            clock_lag_ms=config.clock_lag_ms,
            max_catchup_ms=config.max_catchup_ms,
        )
    if name in ("alpaca", "alpaca-crypto"):
        from market.sources.alpaca import AlpacaSource

        return AlpacaSource.from_config(crypto=name == "alpaca-crypto", config=config)
    if name == "yahoo":
        from market.sources.yahoo import YahooSource

        return YahooSource(
            base_url=config.yahoo_base_url,
            poll_seconds=config.yahoo_poll_seconds,
            policy=config.policy,
            calendar=config.yahoo_calendar or None,
        )
    raise ValueError(f"unknown source {name!r}; available: {', '.join(SOURCE_NAMES)}")

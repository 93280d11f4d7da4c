"""The bundled sample data: real recorded market data (see sample_data/README.md for sources)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.conf import settings


@dataclass(frozen=True)
class SampleInstrument:
    exchange: str
    symbol: str
    history: str | None  # a freqtrade OHLCV feather file of 1m bars, imported as history
    recording: str | None  # a freqtrade trades file, replayed live
    history_days: float | None = None  # import only this many days of `history` (the rest is replayed)


SAMPLE_EXCHANGES = {
    "binance": ("Binance", "crypto"),
    "alpaca": ("Alpaca", "stock,crypto"),
    "yahoo": ("Yahoo Finance", "stock,index,fx"),
}

SAMPLE_INSTRUMENTS = [
    # XRP/ETH trades from Binance, 2019-10-11 to 2019-10-13: the first day as stored history, the
    # rest replayed as a live feed (the replay resumes after the last stored bar).
    SampleInstrument(
        "binance", "XRP/ETH", "freqtrade/XRP_ETH-1m.feather", "freqtrade/XRP_ETH-trades.json.gz", history_days=1
    ),
    # freqtrade's UNITTEST/BTC pair: ten days of real Binance 1m candles from November 2017.
    SampleInstrument("binance", "UNITTEST/BTC", "freqtrade/UNITTEST_BTC-1m.feather", None),
]


def sample_path(relative: str) -> Path:
    return Path(settings.SAMPLE_DATA_DIR) / relative


def replay_recordings() -> dict[str, Path]:
    return {item.symbol: sample_path(item.recording) for item in SAMPLE_INSTRUMENTS if item.recording}

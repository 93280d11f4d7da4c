"""Builders for the exports tests: real sample bars stored through the bar store, users, files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from market.models import Bar, Exchange, Instrument
from market.services import store_bar_frame

FREQTRADE = Path(__file__).resolve().parents[2] / "sample_data" / "freqtrade"
BTC_FEATHER = FREQTRADE / "UNITTEST_BTC-1m.feather"
COLUMNS = ("time", "open", "high", "low", "close", "volume", "trades", "vwap", "final")


def sample_frame(path: Path = BTC_FEATHER, rows: int | None = None) -> pd.DataFrame:
    """freqtrade's real 1m candles, with trade counts and vwaps added: known on most bars, unknown on
    every seventh (stored as NULL), vwaps with all the digits a division leaves."""
    frame = pd.read_feather(path).rename(columns={"date": "time"})
    if rows is not None:
        frame = frame.iloc[:rows]
    frame = frame.reset_index(drop=True)
    unknown = np.arange(len(frame)) % 7 == 3
    frame["trades"] = pd.array(np.where(unknown, -1, np.arange(len(frame)) % 97), dtype="Int64")
    frame.loc[unknown, "trades"] = pd.NA
    frame["vwap"] = ((frame["high"] + frame["low"] + frame["close"]) / 3).where(~unknown)
    return frame


@pytest.fixture
def exchange(db) -> Exchange:
    return Exchange.objects.create(code="binance", name="Binance")


@pytest.fixture
def make_series(exchange) -> Callable[..., Instrument]:
    """make_series("UNITTEST/BTC", rows=500) -> an instrument holding those real 1m bars."""

    def make(symbol: str = "UNITTEST/BTC", *, rows: int | None = None, path: Path = BTC_FEATHER) -> Instrument:
        instrument = Instrument.objects.create(exchange=exchange, symbol=symbol)
        store_bar_frame(sample_frame(path, rows), instrument_id=instrument.pk, timeframe="1m")
        return instrument

    return make


def stored_bars(instrument: Instrument, timeframe: str = "1m") -> list[tuple[Any, ...]]:
    bars = Bar.objects.filter(instrument=instrument, timeframe=timeframe).order_by("time")
    return list(bars.values_list(*COLUMNS))


@pytest.fixture
def export_dir(tmp_path, settings) -> Path:
    settings.EXPORT_DIR = tmp_path / "exports"
    return Path(settings.EXPORT_DIR)

"""Small builders for the backtest tests: bars from a few prices, signals at given bars, real bars."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from indicators.series import Bars

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data" / "freqtrade" / "UNITTEST_BTC-1m.feather"
START = 1_700_000_000 - 1_700_000_000 % 3600


def make_bars(open: Any, close: Any, bar_seconds: int = 3600) -> Bars:
    """Bars with these opens and closes (high and low around them), hourly from START unless told."""
    opens, closes = np.asarray(open, dtype=np.float64), np.asarray(close, dtype=np.float64)
    time = START + bar_seconds * np.arange(len(opens), dtype=np.int64)
    return Bars.from_columns(
        time, opens, np.maximum(opens, closes) * 1.01, np.minimum(opens, closes) * 0.99, closes, np.ones(len(opens))
    )


def signals_at(n: int, entries: Sequence[int], exits: Sequence[int]) -> tuple[Any, Any]:
    """Entry and exit signals (decided at those bars' closes) over n bars."""
    entry, exit = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    entry[list(entries)] = True
    exit[list(exits)] = True
    return entry, exit


def btc_frame(rows: int | None = None) -> pd.DataFrame:
    """Real Binance 1m candles (freqtrade's UNITTEST/BTC, 13,681 of them from 2017-11-04), with real gaps."""
    frame = pd.read_feather(SAMPLE)
    return frame if rows is None else frame.iloc[:rows]


def btc_bars(rows: int | None = None) -> Bars:
    return Bars.from_frame(btc_frame(rows))


@pytest.fixture
def btc(db):
    """UNITTEST/BTC on binance with its first 2,000 real 1m bars stored."""
    from market.models import Exchange, Instrument

    exchange = Exchange.objects.create(code="binance", name="Binance")
    instrument = Instrument.objects.create(exchange=exchange, symbol="UNITTEST/BTC")
    store_btc_bars(instrument, 2000)
    return instrument


def store_btc_bars(instrument: Any, rows: int, timeframe: str = "1m") -> None:
    from market.services import store_bar_frame

    frame = btc_frame(rows).rename(columns={"date": "time"})
    store_bar_frame(frame, instrument_id=instrument.pk, timeframe=timeframe)


@pytest.fixture
def analyst(make_user):
    return make_user("analyst")

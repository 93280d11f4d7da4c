"""Builders shared by the indicator tests: real candles from sample_data/, as `Bars`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from indicators.compute import Context
from indicators.series import Bars
from indicators.sessions import SessionTable
from market.barstore import BarRow
from market.models import Exchange, Instrument
from market.sessions import session_bounds

SAMPLE_DATA = Path(__file__).resolve().parents[2] / "sample_data"


def jesse_bars(number: int | str) -> Bars:
    """jesse's candles; its column order is timestamp, open, CLOSE, HIGH, LOW, volume."""
    frame = pd.read_csv(SAMPLE_DATA / "jesse" / f"test_candles_{number}.csv")
    return Bars.from_columns(
        frame["timestamp"] // 1000, frame["open"], frame["high"], frame["low"], frame["close"], frame["volume"]
    )


def frequi_frame() -> pd.DataFrame:
    payload = json.loads((SAMPLE_DATA / "frequi" / "pair_candles_btc_1m.json").read_text())
    frame = pd.DataFrame(payload["data"], columns=payload["columns"])
    frame["date"] = pd.to_datetime(frame["date"], utc=True)
    return frame


def freqtrade_bars(name: str = "UNITTEST_BTC-1m") -> Bars:
    return Bars.from_frame(pd.read_feather(SAMPLE_DATA / "freqtrade" / f"{name}.feather"))


@pytest.fixture(scope="session")
def btc_1m() -> Bars:
    """13,681 real 1m candles (freqtrade's UNITTEST/BTC)."""
    return freqtrade_bars()


@pytest.fixture(scope="session")
def nyse() -> Context:
    """A stock's context: the New York Stock Exchange's sessions from its maintained calendar."""
    return Context(sessions=SessionTable.from_bounds("XNYS", *session_bounds("XNYS")))


def bars_at(*times: str) -> Bars:
    """Flat bars (typical price 1, volume 1) opening at these UTC times."""
    seconds = pd.to_datetime(list(times), utc=True).as_unit("s").asi8
    ones = [1.0] * len(times)
    return Bars.from_columns(seconds, ones, [1.1] * len(times), [0.9] * len(times), ones, ones)


@pytest.fixture(scope="session")
def ada_5m() -> Bars:
    """5,720 real 5m candles with gaps (freqtrade's ADA/BTC)."""
    return freqtrade_bars("ADA_BTC-5m")


def rows_of(instrument_id: int, bars: Bars, timeframe: str = "1m") -> list[BarRow]:
    return [
        BarRow(instrument_id, timeframe, datetime.fromtimestamp(int(t), tz=UTC), o, h, low, c, v, None, None, True)
        for t, o, h, low, c, v in zip(bars.time, bars.open, bars.high, bars.low, bars.close, bars.volume, strict=True)
    ]


@pytest.fixture
def instrument(db) -> Instrument:
    exchange = Exchange.objects.create(code="binance", name="Binance")
    return Instrument.objects.create(exchange=exchange, symbol="UNITTEST/BTC")

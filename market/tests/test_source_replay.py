"""The replay source beyond freqtrade trade files: cryptofeed's recordings of Binance's raw traffic
(through the live adapter's parser) and OHLCV files (as final bars)."""

from __future__ import annotations

import json
from collections import Counter
from contextlib import aclosing
from typing import Any

import pandas as pd
import pytest
from asgiref.sync import sync_to_async

from market.collector import Collector
from market.models import Bar
from market.sources.base import ClockEvent, KlineEvent, TradeEvent
from market.sources.replay import ReplaySource, read_cryptofeed, recording_kind
from market.tests.conftest import SAMPLE_DATA

CRYPTOFEED = SAMPLE_DATA / "cryptofeed"
FUTURES = CRYPTOFEED / "BINANCE_FUTURES.ws.1.0"


def test_it_tells_recordings_apart_by_content():
    assert recording_kind(FUTURES) == "cryptofeed"
    assert recording_kind(SAMPLE_DATA / "freqtrade" / "XRP_ETH-trades.json.gz") == "trades"
    assert recording_kind(SAMPLE_DATA / "freqtrade" / "XRP_ETH-trades.feather") == "trades"
    assert recording_kind(SAMPLE_DATA / "freqtrade" / "UNITTEST_BTC-1m.json") == "ohlcv"
    assert recording_kind(SAMPLE_DATA / "freqtrade" / "XRP_ETH-1m.feather") == "ohlcv"


def test_it_reads_a_cryptofeed_recording_as_the_connection_and_its_messages():
    url, messages = read_cryptofeed(FUTURES)
    assert url.startswith("wss://fstream.binance.com/stream?streams=sushiusdt@aggTrade")
    assert len(messages) == 1535
    assert messages[0].received_ms == 1626992741062


async def replay_events(source: ReplaySource, symbols: list[str]) -> list[Any]:
    async with aclosing(source.stream(dict.fromkeys(symbols))) as stream:
        return [event async for event in stream]


async def test_a_cryptofeed_recording_replays_as_the_live_adapter_would_have_streamed_it():
    symbols = ["SUSHI/USDT", "AKRO/USDT", "KEEP/USDT", "CTK/USDT"]
    source = ReplaySource(recordings=dict.fromkeys(symbols, FUTURES), speed=0)
    events = await replay_events(source, symbols)
    kinds = Counter(type(event).__name__ for event in events)
    assert (kinds["TradeEvent"], kinds["KlineEvent"]) == (91, 67)
    assert Counter(e.symbol for e in events if isinstance(e, TradeEvent)) == {
        "SUSHI/USDT": 40,
        "CTK/USDT": 38,
        "AKRO/USDT": 8,
        "KEEP/USDT": 5,
    }
    assert [e.time_ms for e in events if isinstance(e, ClockEvent)] == [1626992760000, 1626992820000]
    assert sum(1 for e in events if isinstance(e, KlineEvent) and e.bar.closed) == 4
    assert source.health.rejected == Counter()


@pytest.mark.parametrize(("recording", "trades", "klines"), [("BINANCE.ws.1.0", 2, 2), ("BINANCE_US.ws.1.0", 11, 5)])
async def test_the_spot_recordings_replay_with_their_exact_counts(recording, trades, klines):
    path = CRYPTOFEED / recording
    symbols = {"BINANCE.ws.1.0": ["NKN/USDT", "LRC/BTC"], "BINANCE_US.ws.1.0": ["OMG/BUSD"]}[recording]
    events = await replay_events(ReplaySource(recordings=dict.fromkeys(symbols, path), speed=0), symbols)
    assert sum(isinstance(e, TradeEvent) for e in events) == trades
    assert sum(isinstance(e, KlineEvent) for e in events) == klines


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_thread_connections")
async def test_an_ohlcv_file_replays_as_final_bars_stored_exactly(instrument, tmp_path):
    # Given the first 300 of freqtrade's real 1m candles as an OHLCV JSON file
    rows = json.loads((SAMPLE_DATA / "freqtrade" / "UNITTEST_BTC-1m.json").read_text())[:300]
    path = tmp_path / "candles-1m.json"
    path.write_text(json.dumps(rows))
    source = ReplaySource(recordings={"XRP/ETH": path}, speed=0)

    # When the collector replays it
    stats = await Collector(source, flush_seconds=0.01).run()

    # Then each candle is stored once, final, with its values, and no trade count or vwap invented
    stored: list[Any] = await sync_to_async(list)(  # type: ignore[call-arg]
        Bar.objects.filter(instrument=instrument)
        .order_by("time")
        .values_list("time", "open", "high", "low", "close", "volume", "trades", "vwap", "final")
    )
    assert stats.source_bars == 300
    assert [(int(t.timestamp() * 1000), o, h, low, c, v) for t, o, h, low, c, v, *_ in stored] == [
        tuple(r) for r in rows
    ]
    assert {(trades, vwap, final) for *_, trades, vwap, final in stored} == {(None, None, True)}


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_thread_connections")
async def test_an_ohlcv_replay_resumes_after_the_last_stored_bar(instrument, tmp_path):
    frame = pd.read_feather(SAMPLE_DATA / "freqtrade" / "XRP_ETH-1m.feather").iloc[:50]
    path = tmp_path / "XRP_ETH-1m.feather"
    frame.to_feather(path)
    await Collector(ReplaySource(recordings={"XRP/ETH": path}, speed=0)).run()
    stats = await Collector(ReplaySource(recordings={"XRP/ETH": path}, speed=0)).run()
    assert stats.source_bars == 0
    assert await sync_to_async(Bar.objects.filter(instrument=instrument).count)() == 50


def test_five_minute_candles_are_not_replayed_as_one_minute_bars(tmp_path):
    from market.sources.replay import read_ohlcv

    with pytest.raises(ValueError, match="1m candles"):
        read_ohlcv(SAMPLE_DATA / "freqtrade" / "ADA_BTC-5m.feather")


@pytest.mark.django_db
def test_the_collect_command_takes_recordings_per_symbol(tmp_path):
    from market.management.commands.collect import build_collector

    collector = build_collector(
        {
            "source": "replay",
            "speed": 0.0,
            "loop": False,
            "recording": [f"SUSHI/USDT={FUTURES}"],
            "name": "",
            "shard": "1/2",
        }
    )
    assert collector.source.recordings == {"SUSHI/USDT": FUTURES}  # type: ignore[attr-defined]
    assert collector.name == "replay-1of2"
    assert collector.shard == (1, 2)

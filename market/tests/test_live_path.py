"""The live path end to end: recorded real trades -> collector -> database and channel group ->
a WebSocket client, through the real ASGI application and the configured channel layer."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pandas as pd
import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from cryptostock.asgi import application
from market.collector import Collector
from market.models import Bar
from market.sources.replay import ReplaySource

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_thread_connections")]


@pytest.fixture(autouse=True)
def _public_market_data(settings):
    """These clients connect without signing in, as on a public demo (consumer tests cover auth)."""
    settings.PUBLIC_MARKET_DATA = True


FIRST_TRADES = 300


@pytest.fixture
def short_recording(sample_data, tmp_path):
    """The first 300 real XRP/ETH trades, as a freqtrade trades file."""
    with gzip.open(sample_data / "freqtrade" / "XRP_ETH-trades.json.gz", "rt") as handle:
        rows = json.load(handle)[:FIRST_TRADES]
    path = tmp_path / "XRP_ETH-trades.json"
    path.write_text(json.dumps(rows))
    return path, rows


def reference_bars(sample_data, rows) -> pd.DataFrame:
    last_minute = pd.Timestamp(rows[-1][0], unit="ms", tz="UTC").floor("min")
    candles = pd.read_feather(sample_data / "freqtrade" / "XRP_ETH-1m.feather")
    # The reference candle of the last minute saw more trades than the first 300.
    return candles[candles["date"] < last_minute].reset_index(drop=True)


def stored_bars(instrument_id: int) -> pd.DataFrame:
    rows = Bar.objects.filter(instrument_id=instrument_id, timeframe="1m").order_by("time")
    return pd.DataFrame.from_records(
        rows.values_list("time", "open", "high", "low", "close", "volume", "final"),
        columns=["date", "open", "high", "low", "close", "volume", "final"],
    )


async def receive_until_final(communicator, count: int) -> list[dict[str, Any]]:
    finals: list[dict[str, Any]] = []
    while len(finals) < count:
        message = await communicator.receive_json_from(timeout=10)
        if message["type"] == "bar" and message["bar"]["final"]:
            finals.append(message["bar"])
    return finals


async def test_replayed_trades_reach_the_database_and_a_subscribed_websocket_client(
    instrument, sample_data, short_recording
):
    # Given a browser subscribed to the instrument's 1m bars
    path, rows = short_recording
    communicator = WebsocketCommunicator(application, "/ws/v1/market/", headers=[(b"host", b"127.0.0.1")])
    connected, _ = await communicator.connect()
    assert connected
    await communicator.send_json_to({"action": "subscribe", "instrument": instrument.pk, "timeframe": "1m"})
    snapshot = await communicator.receive_json_from(timeout=5)
    assert snapshot == {"type": "snapshot", "instrument": instrument.pk, "timeframe": "1m", "bars": []}

    # When the collector replays real trades as fast as it can
    source = ReplaySource(recordings={"XRP/ETH": path}, speed=0, loop=False)
    stats = await Collector(source, flush_seconds=0.05).run()

    # Then the stored bars are exactly the reference candles built from the same trades
    expected = reference_bars(sample_data, rows)
    stored = await sync_to_async(stored_bars)(instrument.pk)
    assert stats.trades == FIRST_TRADES
    assert stored["final"].all()
    pd.testing.assert_frame_equal(
        stored.drop(columns="final").iloc[: len(expected)], expected, check_exact=True, check_dtype=False
    )
    # ... and the client received every final bar, in order, with the stored values
    finals = await receive_until_final(communicator, len(stored))
    assert [bar["time"] for bar in finals] == [int(t.timestamp()) for t in stored["date"]]
    assert [bar["close"] for bar in finals] == stored["close"].tolist()
    await communicator.disconnect()


async def test_a_collector_restart_resumes_after_the_last_stored_bar_without_duplicates(instrument, short_recording):
    path, _ = short_recording
    await Collector(ReplaySource(recordings={"XRP/ETH": path}, speed=0, loop=False)).run()
    first = await sync_to_async(stored_bars)(instrument.pk)

    stats = await Collector(ReplaySource(recordings={"XRP/ETH": path}, speed=0, loop=False)).run()

    assert stats.trades == 0
    pd.testing.assert_frame_equal(await sync_to_async(stored_bars)(instrument.pk), first)


async def test_the_websocket_answers_bad_messages_with_errors_and_stays_open(instrument):
    communicator = WebsocketCommunicator(application, "/ws/v1/market/", headers=[(b"host", b"127.0.0.1")])
    await communicator.connect()
    await communicator.send_to(text_data="{not json")
    assert (await communicator.receive_json_from())["type"] == "error"
    await communicator.send_json_to({"action": "subscribe", "instrument": instrument.pk, "timeframe": "2m"})
    error = await communicator.receive_json_from()
    assert error["type"] == "error"
    assert "2m" in error["message"]
    await communicator.send_json_to({"action": "subscribe", "instrument": 999_999})
    assert "999999" in (await communicator.receive_json_from())["message"]
    await communicator.send_json_to({"action": "ping"})
    assert await communicator.receive_json_from() == {"type": "pong"}
    await communicator.disconnect()

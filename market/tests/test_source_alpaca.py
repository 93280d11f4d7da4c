"""The Alpaca adapter (alpaca-py's data streams) against a local server speaking Alpaca's protocol and
replaying the trade and bar bodies recorded from Alpaca's API in alpaca-py's test suite."""

from __future__ import annotations

import asyncio
from collections import Counter
from contextlib import aclosing
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from market.collector import Collector
from market.models import Bar, Exchange, Instrument
from market.sources.alpaca import AlpacaSource, parse_trade, timestamp_ms
from market.sources.base import KlineEvent, TradeEvent
from market.sources.resilience import RetryPolicy
from market.tests.conftest import SAMPLE_DATA
from market.tests.servers.alpaca import (
    CRYPTO_BARS,
    CRYPTO_TRADES,
    KEY,
    SECRET,
    STOCK_BARS,
    STOCK_TRADES,
    AlpacaServer,
    recorded_items,
)
from market.tests.servers.binance import Fault

RECORDED = SAMPLE_DATA / "alpaca-py"
FAST = RetryPolicy(backoff_base_seconds=0.01, backoff_max_seconds=0.05, stall_seconds=2, breaker_reset_seconds=0.1)


def stock_items() -> list[Any]:
    return recorded_items(RECORDED, STOCK_TRADES, STOCK_BARS)


def source_for(server: AlpacaServer, *, crypto: bool = False, key: str = KEY) -> AlpacaSource:
    return AlpacaSource(
        api_key=key,
        secret_key=SECRET,
        crypto=crypto,
        stream_url=server.ws_url,
        data_url=server.rest_url,
        policy=FAST,
        clock_lag_ms=0,
    )


async def collect_events(source, symbols, *, until, timeout=20.0) -> list[Any]:
    events = []
    async with asyncio.timeout(timeout), aclosing(source.stream(symbols)) as stream:
        async for event in stream:
            events.append(event)
            if until(events):
                break
    return events


def counts(events) -> Counter[str]:
    return Counter(type(event).__name__ for event in events)


def test_it_reads_alpacas_timestamps_to_the_millisecond():
    assert timestamp_ms("2022-03-18T14:02:09.722539521Z") == 1647612129722
    assert timestamp_ms("2022-07-26T20:50:00Z") == 1658868600000


def test_a_stock_trades_id_is_unique_per_exchange():
    trade = parse_trade({"t": "2022-03-09T05:00:02.183Z", "x": "D", "p": 159.07, "s": 1, "i": 151}, crypto=False)
    assert (trade.trade_id, trade.time_ms, trade.price, trade.amount) == ("D-151", 1646802002183, 159.07, 1.0)


async def test_it_streams_the_7_recorded_stock_trades_and_3_minute_bars_over_msgpack():
    async with AlpacaServer(stock_items()) as server:
        source = source_for(server)
        events = await collect_events(
            source,
            dict.fromkeys(["AAPL", "TSLA", "SPY"]),
            until=lambda events: counts(events)["TradeEvent"] == 7 and counts(events)["KlineEvent"] == 3,
        )
    assert server.encodings == ["msgpack"]  # alpaca-py asks for msgpack
    assert server.subscriptions[0]["action"] == "subscribe"
    assert set(server.subscriptions[0]["trades"]) == {"AAPL", "TSLA", "SPY"}
    trades = [event for event in events if isinstance(event, TradeEvent)]
    assert Counter(event.symbol for event in trades) == {"AAPL": 5, "TSLA": 2}
    assert [event.trade.trade_id for event in trades if event.symbol == "AAPL"] == [
        "D-151",
        "D-151",  # the same trade is in two of the recorded bodies
        "D-168",
        "D-22730",
        "D-22730",
    ]
    bars = [event for event in events if isinstance(event, KlineEvent)]
    assert Counter(event.symbol for event in bars) == {"SPY": 2, "TSLA": 1}
    assert source.health.rejected == Counter()


async def test_it_streams_the_3_recorded_crypto_trades_and_the_minute_bar():
    items = recorded_items(RECORDED, CRYPTO_TRADES, CRYPTO_BARS)
    async with AlpacaServer(items) as server:
        source = source_for(server, crypto=True)
        events = await collect_events(
            source,
            dict.fromkeys(["BTC/USD", "ETH/USD"]),
            until=lambda events: counts(events)["TradeEvent"] == 3 and counts(events)["KlineEvent"] == 1,
        )
    trades = [event for event in events if isinstance(event, TradeEvent)]
    assert Counter(event.symbol for event in trades) == {"BTC/USD": 2, "ETH/USD": 1}
    assert trades[0].trade.trade_id == "293648598"


@pytest.fixture
def alpaca_instruments(db):
    exchange = Exchange.objects.create(code="alpaca", name="Alpaca", asset_classes="stock,crypto")
    return {
        symbol: Instrument.objects.create(exchange=exchange, symbol=symbol, asset_class="stock").pk
        for symbol in ("AAPL", "TSLA", "SPY")
    }


def stored(instrument_id: int) -> list[tuple[Any, ...]]:
    return list(
        Bar.objects.filter(instrument_id=instrument_id, final=True)
        .order_by("time")
        .values_list("time", "open", "high", "low", "close", "volume", "trades")
    )


async def run_collector(server: AlpacaServer, expected_bars: int, klines: int = 0) -> Collector:
    collector = Collector(source_for(server), flush_seconds=0.02)
    count = sync_to_async(lambda: Bar.objects.filter(final=True).count())
    task = asyncio.create_task(collector.run())
    try:
        async with asyncio.timeout(30):
            while not (server.finished and await count() >= expected_bars and collector.stats.klines >= klines):
                assert not task.done(), task.result()
                await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return collector


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_thread_connections")
async def test_the_collector_builds_bars_from_alpaca_trades_dropping_the_duplicates(alpaca_instruments):
    async with AlpacaServer(stock_items()) as server:
        collector = await run_collector(server, expected_bars=4, klines=3)
    aapl = await sync_to_async(stored)(alpaca_instruments["AAPL"])
    assert [(row[0].isoformat(), row[1:]) for row in aapl] == [
        ("2022-03-09T05:00:00+00:00", (159.07, 159.07, 159.07, 159.07, 3.0, 2)),
        ("2022-03-18T14:02:00+00:00", (161.2958, 161.2958, 161.2958, 161.2958, 100.0, 1)),
    ]
    assert len(await sync_to_async(stored)(alpaca_instruments["TSLA"])) == 2
    assert sum(tracked.builder.stats.duplicates for tracked in collector.tracked.values()) == 2
    # Alpaca's three minute bars (SPY, TSLA, SPY again, identical) are at minutes we have no trades
    # for; each is checked once its minute's grace is over, the last on arrival (already over then)
    assert collector.stats.reconciled == {"missing": 3}


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_thread_connections")
async def test_after_a_drop_the_missed_trades_come_over_paginated_rest_and_the_bars_are_the_same(
    alpaca_instruments,
):
    # Given the connection drops after 2 trades while 3 more happen, and REST fails once
    faults = {1: [Fault("drop", after=2, skip=3)]}
    async with AlpacaServer(stock_items(), faults=faults, rest_faults=[500], pace=20) as server:
        collector = await run_collector(server, expected_bars=4)
    # Then the missed trades came over REST, page by page (2 trades a page on this server)
    assert collector.source.health.reconnects >= 2
    assert any("page_token" in request for request in server.rest_requests)
    # ... and the bars are those of the uninterrupted stream
    aapl = await sync_to_async(stored)(alpaca_instruments["AAPL"])
    assert [row[1:] for row in aapl] == [
        (159.07, 159.07, 159.07, 159.07, 3.0, 2),
        (161.2958, 161.2958, 161.2958, 161.2958, 100.0, 1),
    ]
    assert len(await sync_to_async(stored)(alpaca_instruments["TSLA"])) == 2


async def test_a_frame_alpaca_py_cannot_decode_is_counted_and_the_connection_kept():
    faults = {1: [Fault("garbage", after=1, payloads=[b"\xc1\xc1 not msgpack", "a text frame"])]}
    async with AlpacaServer(stock_items(), faults=faults) as server:
        source = source_for(server)
        events = await collect_events(
            source, dict.fromkeys(["AAPL", "TSLA"]), until=lambda events: counts(events)["TradeEvent"] == 7
        )
    assert source.health.rejected["undecodable frame"] == 2
    assert source.health.reconnects == 0
    assert counts(events)["TradeEvent"] == 7


async def test_refused_credentials_are_retried_with_backoff_and_reported():
    async with AlpacaServer(stock_items()) as server:
        source = source_for(server, key="wrong")
        task = asyncio.create_task(collect_events(source, {"AAPL": None}, until=lambda events: True, timeout=5))
        async with asyncio.timeout(5):
            while source.health.reconnects < 3:
                await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert server.authenticated == 0
    assert "auth failed" in source.health.last_error

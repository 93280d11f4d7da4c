"""Fault injection with a real local Binance: the connection drops mid-minute, the handshake and the
REST API answer 5xx or 429, the stream sends garbage or stalls. Every time the collector recovers, and
the stored bars equal the bars built from the uninterrupted stream: no minute lost, none duplicated.

The oracle: the same recorded XRP/ETH aggregate trades through the pure bar builder (whose output
test_bars.py checks against freqtrade's own candles)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from market.bars import build_bars
from market.collector import Collector
from market.models import Bar, CollectorStatus
from market.sources.binance import BinanceSource, trade_from_rest
from market.sources.resilience import RetryPolicy
from market.tests.conftest import SAMPLE_DATA
from market.tests.servers.binance import BinanceServer, Fault, Message, messages_from_ccxt_trades

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_thread_connections")]

XRP_OLD = SAMPLE_DATA / "freqtrade" / "XRP_OLD-trades.json.gz"
TRADES = 1500
PACE = 3000  # messages a second
FAST = RetryPolicy(
    breaker_failures=3,
    breaker_reset_seconds=0.2,
    backoff_base_seconds=0.02,
    backoff_max_seconds=0.1,
    stall_seconds=0.5,
    stable_seconds=60,
)
GARBAGE: list[str | bytes] = [
    b"\x00\x01\x02 binary junk",
    "not json at all",
    '{"stream":"xrpeth@aggTrade","data":{"e":"aggTrade","E":1,"s":"XRPETH","a":"oops"}}',
    '{"stream":"xrpeth@aggTrade","data":{"e":"aggTrade","E":1,"s":"XRPETH","a":1,"p":"NaN?","q":"1","f":1,"l":1,"T":1}}',
    '{"unexpected": true}',
]


@pytest.fixture(scope="module")
def messages() -> list[Message]:
    return messages_from_ccxt_trades(XRP_OLD, "XRPETH", count=TRADES)


def expected_rows(messages: list[Message]) -> list[tuple[Any, ...]]:
    bars = build_bars(trade_from_rest(m.rest_row) for m in messages if m.rest_row is not None)
    return [
        (bar.time_ms, bar.open, bar.high, bar.low, bar.close, bar.volume, bar.trades, bar.vwap, True) for bar in bars
    ]


def stored_rows(instrument_id: int) -> list[tuple[Any, ...]]:
    rows = Bar.objects.filter(instrument_id=instrument_id, timeframe="1m").order_by("time")
    return [
        (int(b.time.timestamp() * 1000), b.open, b.high, b.low, b.close, b.volume, b.trades, b.vwap, b.final)
        for b in rows
    ]


def mid_minute(messages: list[Message], near: int) -> int:
    """A count of sent messages after which the next trade is in the same minute as the last one."""
    for index in range(near, len(messages) - 1):
        a, b = messages[index - 1].rest_row, messages[index].rest_row
        if a and b and a["T"] // 60_000 == b["T"] // 60_000:
            return index
    raise AssertionError("no trade pair within one minute")


async def collect_until_complete(collector: Collector, server: BinanceServer, expected: int, timeout: float = 60):
    count = sync_to_async(lambda: Bar.objects.filter(final=True).count())
    task = asyncio.create_task(collector.run())
    try:
        async with asyncio.timeout(timeout):
            while not (server.finished and await count() >= expected and not collector._pending):
                if task.done():
                    task.result()
                    raise AssertionError("the collector stopped on its own")
                await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def collector_for(server: BinanceServer) -> Collector:
    source = BinanceSource(ws_url=server.ws_url, rest_url=server.rest_url, policy=FAST, clock_lag_ms=0)
    return Collector(source, flush_seconds=0.02, health_seconds=0.2)


Scenario = Callable[[list[Message]], dict[str, Any]]


def uninterrupted(messages):
    return {}


def drop_mid_minute(messages):
    return {"faults": {1: [Fault("drop", after=mid_minute(messages, 300), skip=57)]}}


def refused_with_5xx_and_429(messages):
    return {
        "faults": {1: [Fault("drop", after=mid_minute(messages, 200), skip=31)]},
        "refuse": {2: (503, None), 3: (429, 0.0), 4: (502, None)},
    }


def rest_errors(messages):
    return {"faults": {1: [Fault("drop", after=mid_minute(messages, 400), skip=80)]}, "rest_faults": [503, 429, 500]}


def garbage(messages):
    return {"faults": {1: [Fault("garbage", after=mid_minute(messages, 250), payloads=GARBAGE)]}}


def stall(messages):
    return {"faults": {1: [Fault("stall", after=mid_minute(messages, 350), skip=45)]}}


def everything(messages):
    return {
        "faults": {
            1: [Fault("garbage", after=100, payloads=GARBAGE), Fault("drop", after=mid_minute(messages, 300), skip=20)],
            3: [Fault("stall", after=mid_minute(messages, 150), skip=60)],
            4: [Fault("drop", after=mid_minute(messages, 400), skip=5)],
        },
        "refuse": {2: (503, None)},
        "rest_faults": [429, 503],
    }


@pytest.mark.parametrize(
    "scenario", [uninterrupted, drop_mid_minute, refused_with_5xx_and_429, rest_errors, garbage, stall, everything]
)
async def test_the_stored_bars_equal_the_uninterrupted_streams_whatever_fails(instrument, messages, scenario):
    # Given a local Binance that fails as the scenario says
    expected = expected_rows(messages)
    # (paced like a real market: the live stream does not run hours ahead of a REST catch-up)
    async with BinanceServer(messages, pace=PACE, **scenario(messages)) as server:
        collector = collector_for(server)

        # When the collector runs until the recording is over and its bars are stored
        await collect_until_complete(collector, server, len(expected))

    # Then the stored bars are exactly the bars of the uninterrupted stream, all final
    assert await sync_to_async(stored_rows)(instrument.pk) == expected
    # ... every exchange kline it received agreed with our bar of that minute
    assert set(collector.stats.reconciled) <= {"match"}
    assert collector.stats.reconciled["match"] > 0
    # ... and what went wrong is on record
    health = collector.source.health
    status = await sync_to_async(CollectorStatus.objects.get)(name="binance")
    if scenario is uninterrupted:
        assert health.reconnects == 0
        assert health.rejected == {}
    if scenario is garbage:
        assert health.reconnects == 0
        assert sum(health.rejected.values()) == len(GARBAGE)
        assert status.rejected >= len(GARBAGE)
    if scenario in (drop_mid_minute, rest_errors, stall):
        assert health.reconnects >= 1
    if scenario is refused_with_5xx_and_429:
        assert server.attempts == 5
        assert health.reconnects == 4
        assert "HTTP 502" in health.last_error
    assert status.state == "stopped"
    assert status.trades == collector.stats.trades


async def test_the_breaker_opens_after_repeated_failures_and_closes_once_the_source_answers(instrument, messages):
    # Given a server that refuses the first five connection attempts
    refuse: dict[int, tuple[int, float | None]] = dict.fromkeys(range(1, 6), (503, None))
    async with BinanceServer(messages[:200], refuse=refuse) as server:
        collector = collector_for(server)
        task = asyncio.create_task(collector.run())
        try:
            async with asyncio.timeout(30):
                while not server.finished or collector.stats.trades == 0:
                    await asyncio.sleep(0.01)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    breaker = collector.source.health.breaker
    # Then it opened (3 failures in a row) at least once, and it is closed again now
    assert breaker.times_opened >= 1
    assert breaker.failures == 0
    assert server.connections == 1


async def test_an_exchange_kline_that_disagrees_with_our_bar_is_counted_and_logged(instrument, messages, caplog):
    # Given the exchange's closing kline of one minute says its high was higher than any trade
    index, tampered = next((i, m) for i, m in enumerate(messages) if m.kind == "kline")
    data = json.loads(tampered.text)
    data["data"]["k"]["h"] = str(float(data["data"]["k"]["h"]) * 1.01)
    changed = [
        *messages[:index],
        Message(tampered.stream, tampered.symbol, "kline", json.dumps(data)),
        *messages[index + 1 :],
    ]
    async with BinanceServer(changed[:400], pace=PACE) as server:
        collector = collector_for(server)
        expected = expected_rows(changed[:400])
        await collect_until_complete(collector, server, len(expected))
    # Then that minute is a mismatch, the others match
    assert collector.stats.reconciled["mismatch"] == 1
    assert collector.stats.reconciled["match"] > 10
    assert "differs from the exchange's beyond rounding (mismatch): high" in caplog.text

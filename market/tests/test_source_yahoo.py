"""Yahoo polls to bars: the pure poll state, then yfinance itself against a local Yahoo serving real
1m candles in Yahoo's chart shape."""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from market.bars import MINUTE_MS, MinuteBar
from market.collector import Collector
from market.models import Bar, Exchange, Instrument
from market.sources.base import BarEvent
from market.sources.resilience import RetryPolicy
from market.sources.yahoo import PollState, RoutedSession, YahooSource, bar_problem
from market.tests.conftest import SAMPLE_DATA
from market.tests.servers.yahoo import YahooServer, load_candles

CANDLES = load_candles(SAMPLE_DATA / "frequi" / "pair_candles_btc_1m.json")
FAST = RetryPolicy(backoff_base_seconds=0.01, backoff_max_seconds=0.05, breaker_reset_seconds=0.05)


def bar(minute: int, close: float = 10.0, volume: float = 5.0) -> MinuteBar:
    time_ms = minute * MINUTE_MS
    return MinuteBar(time_ms, 10.0, max(10.0, close), min(10.0, close), close, volume, 0, 0.0, time_ms, time_ms)


def test_overlapping_polls_emit_each_final_bar_once_and_the_running_minute_as_partial():
    state = PollState()
    first = state.update([bar(0), bar(1), bar(2, volume=1)], source_now_ms=2 * MINUTE_MS + 30_000)
    assert [(b.time_ms // MINUTE_MS, final) for b, final in first] == [(0, True), (1, True), (2, False)]
    # The next poll overlaps: minutes 0 and 1 again, 2 is over now, 3 runs
    second = state.update([bar(0), bar(1), bar(2, volume=4), bar(3, volume=2)], source_now_ms=3 * MINUTE_MS + 10_000)
    assert [(b.time_ms // MINUTE_MS, final, b.volume) for b, final in second] == [(2, True, 4.0), (3, False, 2.0)]
    # Nothing new: nothing emitted
    assert state.update([bar(2, volume=4), bar(3, volume=2)], source_now_ms=3 * MINUTE_MS + 20_000) == []


def test_a_bar_is_final_once_yahoos_clock_passes_its_end_even_without_a_later_bar():
    state = PollState()
    assert state.update([bar(5)], source_now_ms=6 * MINUTE_MS) == [(bar(5), True)]


def test_a_recent_final_bar_that_yahoo_revises_is_emitted_again_as_a_correction():
    state = PollState(revise_minutes=10)
    state.update([bar(0), bar(1)], source_now_ms=5 * MINUTE_MS)
    revised = state.update([bar(0, volume=7), bar(1)], source_now_ms=5 * MINUTE_MS)
    assert revised == [(bar(0, volume=7), True)]
    assert state.corrections == 1
    # ... but not once it is older than the revision window
    state.update([bar(30)], source_now_ms=31 * MINUTE_MS)
    assert state.update([bar(0, volume=9)], source_now_ms=31 * MINUTE_MS) == []


def test_bars_yahoo_should_not_have_are_named():
    assert bar_problem(bar(0)) is None
    assert bar_problem(MinuteBar(0, 1.0, 2.0, 0.5, float("nan"), 1.0, 0, 0.0)) == "not a number"
    assert bar_problem(MinuteBar(0, 3.0, 2.0, 0.5, 1.0, 1.0, 0, 0.0)) == "open or close outside low..high"
    assert bar_problem(MinuteBar(0, 1.0, 2.0, 0.0, 1.0, 1.0, 0, 0.0)) == "price not positive"


def test_the_routed_session_sends_every_yahoo_host_to_the_base_url(monkeypatch):
    sent = []
    monkeypatch.setattr("requests.Session.request", lambda self, method, url, *a, **k: sent.append((url, k)))
    session = RoutedSession("http://127.0.0.1:9")
    session.request("GET", "https://query2.finance.yahoo.com/v8/finance/chart/AAPL?interval=1m")
    session.request("GET", "https://fc.yahoo.com")
    session.request("GET", "https://example.com/x")
    assert [url for url, _ in sent] == [
        "http://127.0.0.1:9/v8/finance/chart/AAPL?interval=1m",
        "http://127.0.0.1:9/",
        "https://example.com/x",
    ]
    assert sent[0][1]["headers"]["X-Yahoo-Host"] == "query2.finance.yahoo.com"


async def poll_until(source: YahooSource, symbol: str, *, last_minute: int, timeout=60) -> list[BarEvent]:
    events: list[BarEvent] = []
    async with asyncio.timeout(timeout), aclosing(source.stream({symbol: None})) as stream:
        async for event in stream:
            assert isinstance(event, BarEvent)
            events.append(event)
            if event.final and event.bar.time_ms == last_minute:
                break
    return events


async def test_yfinance_polls_of_a_local_yahoo_become_each_real_candle_exactly_once():
    # Given a local Yahoo whose clock moves 7 minutes per chart request, through 120 real candles
    candles = CANDLES[:120]
    start = candles[0][0] + 45_000
    async with YahooServer("BTC-USD", candles, clock_ms=start, step_ms=7 * MINUTE_MS) as server:
        source = YahooSource(base_url=server.url, poll_seconds=0.01, policy=FAST)

        # When the adapter polls through yfinance until the candles are over
        events = await poll_until(source, "BTC-USD", last_minute=candles[-1][0])

    # Then every candle came out final exactly once, with Yahoo's values, and the running minutes
    # came out as partial bars first
    finals = [e.bar for e in events if e.final]
    assert [(b.time_ms, b.open, b.high, b.low, b.close, b.volume) for b in finals] == [tuple(c) for c in candles]
    partials = [e.bar for e in events if not e.final]
    assert partials
    assert all(p.high == p.open == p.close for p in partials)  # the local Yahoo's incomplete minute
    # ... through yfinance's own requests: cookie, then the chart API with its crumb (yfinance keeps
    # the crumb for the process, so it was fetched from query1's getcrumb at most once)
    hosts = {host for host, _ in server.requests}
    assert {"fc.yahoo.com", "query2.finance.yahoo.com"} <= hosts
    charts = [query for host, query in server.requests if "interval" in query and query["interval"] == "1m"]
    assert charts[0].get("range") == "1d"
    assert all("period1" in query and query["crumb"] == "test-crumb" for query in charts[1:])


async def test_server_errors_and_rate_limits_are_retried_and_no_candle_is_lost():
    candles = CANDLES[:60]
    faults = [500, 500, 429, 429]  # yfinance retries each failed request once itself
    async with YahooServer(
        "BTC-USD", candles, clock_ms=candles[0][0] + 45_000, step_ms=7 * MINUTE_MS, faults=faults
    ) as server:
        source = YahooSource(base_url=server.url, poll_seconds=0.01, policy=FAST)
        events = await poll_until(source, "BTC-USD", last_minute=candles[-1][0])
    finals = [e.bar for e in events if e.final]
    assert [b.time_ms for b in finals] == [c[0] for c in candles]
    assert source.health.reconnects == 2
    assert "429" in source.health.last_error or "rate" in source.health.last_error


async def test_an_unknown_symbol_is_reported_and_does_not_stop_the_others():
    candles = CANDLES[:30]
    async with YahooServer("BTC-USD", candles, clock_ms=candles[0][0] + 45_000, step_ms=3 * MINUTE_MS) as server:
        source = YahooSource(base_url=server.url, poll_seconds=0.01, policy=FAST)
        assert await source.poll("NOPE-USD") == []
        assert len(await source.poll("BTC-USD")) > 0
    assert source.health.rejected["no data from Yahoo"] == 1
    assert source.health.reconnects == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_thread_connections")
async def test_the_collector_stores_yahoos_bars_once_each():
    exchange = await sync_to_async(Exchange.objects.create)(code="yahoo", name="Yahoo Finance")
    instrument = await sync_to_async(Instrument.objects.create)(
        exchange=exchange, symbol="BTC-USD", asset_class="crypto"
    )
    candles = CANDLES[:90]
    async with YahooServer("BTC-USD", candles, clock_ms=candles[0][0] + 45_000, step_ms=9 * MINUTE_MS) as server:
        collector = Collector(YahooSource(base_url=server.url, poll_seconds=0.01, policy=FAST), flush_seconds=0.02)
        count = sync_to_async(lambda: Bar.objects.filter(final=True).count())
        task = asyncio.create_task(collector.run())
        try:
            async with asyncio.timeout(60):
                while await count() < len(candles):
                    assert not task.done()
                    await asyncio.sleep(0.05)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    stored: list[Any] = await sync_to_async(list)(  # type: ignore[call-arg]
        Bar.objects.filter(instrument=instrument)
        .order_by("time")
        .values_list("open", "high", "low", "close", "volume", "trades", "vwap", "final")
    )
    assert stored == [(o, h, low, c, v, None, None, True) for _, o, h, low, c, v in candles]

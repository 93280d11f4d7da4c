"""A Binance USDⓈ-M futures collector against a local futures market (fapi paths) replaying
cryptofeed's recording of Binance's real futures stream: bars, reconciliation with the exchange's
klines, and a gap older than the trade catch-up filled from `/fapi/v1/klines`."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from market.bars import MINUTE_MS
from market.collector import Collector
from market.models import Bar, Exchange, Instrument
from market.sources.binance import BinanceSource
from market.sources.resilience import RetryPolicy
from market.tests.conftest import SAMPLE_DATA
from market.tests.servers.binance import BinanceServer, messages_from_cryptofeed

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_thread_connections")]

RECORDING = SAMPLE_DATA / "cryptofeed" / "BINANCE_FUTURES.ws.1.0"
SYMBOLS = ["SUSHI/USDT", "AKRO/USDT", "KEEP/USDT", "CTK/USDT"]
FIRST_MINUTE = 1626992700000  # 2021-07-22 22:25 UTC; the recording starts 41 s into it


@pytest.fixture
def futures(db) -> dict[str, Instrument]:
    exchange = Exchange.objects.create(code="binance-futures", name="Binance futures", asset_classes="crypto")
    return {symbol: Instrument.objects.create(exchange=exchange, symbol=symbol) for symbol in SYMBOLS}


def futures_source(server: BinanceServer, **kwargs) -> BinanceSource:
    return BinanceSource.futures(
        ws_url=server.ws_url, rest_url=server.rest_url, clock_lag_ms=0, policy=RetryPolicy(stall_seconds=30), **kwargs
    )


async def run_until(collector: Collector, done: Callable[[], bool], timeout: float = 20) -> None:
    task = asyncio.create_task(collector.run())
    try:
        async with asyncio.timeout(timeout):
            while not done():
                await asyncio.sleep(0.02)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def last_kline(server: BinanceServer, exchange_symbol: str, minute: int) -> dict[str, Any]:
    klines = [json.loads(m.text)["data"]["k"] for m in server.messages if m.kind == "kline"]
    return [k for k in klines if k["s"] == exchange_symbol and k["t"] == minute][-1]


async def test_a_futures_collector_stores_the_streamed_bars_and_checks_them_against_the_klines(futures):
    # Given a local futures market replaying the recorded stream of four perpetuals
    async with BinanceServer(messages_from_cryptofeed(RECORDING), rest_prefix="/fapi/v1") as server:
        collector = Collector(futures_source(server), flush_seconds=0.01)
        assert collector.source.exchange == "binance-futures"

        # When the collector streams it to the end
        await run_until(
            collector, lambda: server.finished and collector.stats.trades == 91 and collector.stats.klines == 67
        )

    # Then all 91 trades and 67 klines were taken, the first minute's bars were stored final, and
    # the exchange's closed kline of that minute was checked against each of them: we joined the
    # minute 41 s late, so each is "incomplete" (consistent with the kline, not all of it)
    assert (collector.stats.trades, collector.stats.klines) == (91, 67)
    assert collector.stats.reconciled == Counter({"incomplete": 4})
    finals = await sync_to_async(lambda: list(Bar.objects.filter(final=True).values_list("instrument_id", "time")))()
    assert {instrument for instrument, _ in finals} == {i.pk for i in futures.values()}
    assert {int(time.timestamp() * 1000) for _, time in finals} == {FIRST_MINUTE}
    assert all(path.startswith("/fapi/v1/") for path in server.rest_requests)


async def test_a_gap_older_than_the_trade_catch_up_is_filled_from_the_futures_klines(futures, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True  # the gap-fill task runs in the collector's worker thread
    settings.BACKFILL_REQUEST_INTERVAL = 0.0
    sushi = futures["SUSHI/USDT"]
    # Given a collector that stopped three minutes before the recording and a market that has
    # since recorded everything
    async with BinanceServer(messages_from_cryptofeed(RECORDING), rest_prefix="/fapi/v1") as server:
        settings.BINANCE_FUTURES_API_URL = server.rest_url
        server.advance(len(server.messages))
        await sync_to_async(Bar.objects.create)(
            instrument=sushi,
            timeframe="1m",
            time=utc(FIRST_MINUTE - 3 * MINUTE_MS),
            open=10,
            high=10,
            low=10,
            close=10,
            volume=1,
            final=True,
        )
        # When it restarts with a trade catch-up that reaches back less than a minute
        collector = Collector(futures_source(server, max_catchup_ms=0), flush_seconds=0.01)

        def filled() -> bool:
            return collector.stats.gaps_backfill_requested == 1

        await run_until(collector, filled)

    # Then the minutes before the catch-up window were fetched as klines from fapi and stored as
    # Binance computed them (the whole minute, including the 41 s before the recording started)
    assert any(path.startswith("/fapi/v1/klines?") for path in server.rest_requests)
    bar = await sync_to_async(Bar.objects.get)(instrument=sushi, timeframe="1m", time=utc(FIRST_MINUTE))
    kline = last_kline(server, "SUSHIUSDT", FIRST_MINUTE)
    assert (bar.open, bar.high, bar.low, bar.close, bar.volume, bar.trades) == (
        float(kline["o"]),
        float(kline["h"]),
        float(kline["l"]),
        float(kline["c"]),
        float(kline["v"]),
        kline["n"],
    )
    assert bar.final


def utc(time_ms: int):
    from market.services import utc_from_ms

    return utc_from_ms(time_ms)

"""The collector around the bar builder: database outages, shutdown, partial and final publishing,
late trades, instruments followed from the database, market hours, health and gap backfill."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import OperationalError
from django.utils import timezone

from market import collector as collector_module
from market.bars import MINUTE_MS, Trade
from market.circuit import Backoff
from market.collector import Collector, in_shard
from market.groups import bars_group
from market.models import Bar, CollectorStatus, Instrument
from market.sources.base import (
    ClockEvent,
    GapEvent,
    Source,
    SourceEvent,
    SourceHealth,
    TradeBatch,
    TradeEvent,
    as_subscription,
)
from market.sources.binance import BinanceParser
from market.tests.broadcasts import bar_frames
from market.tests.conftest import SAMPLE_DATA
from market.tests.servers.binance import (
    BinanceServer,
    events_one_by_one,
    messages_from_ccxt_trades,
    messages_from_cryptofeed,
)

XRP_OLD = SAMPLE_DATA / "freqtrade" / "XRP_OLD-trades.json.gz"

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_thread_connections")]


class ListSource(Source):
    """The given events, then the end of the stream (or, with `hold`, silence until cancelled)."""

    name = "test"
    exchange = "binance"

    def __init__(
        self, events: Sequence[SourceEvent], *, hold: bool = False, calendar: str | None = None, pause: float = 0
    ) -> None:
        self.events = events
        self.hold = hold
        self.pause = pause
        self.calendar = calendar
        self.starts = 0

    async def stream(self, symbols: Mapping[str, int | None]):
        self.starts += 1
        for event in self.events:
            self.health.received()
            yield event
            await asyncio.sleep(self.pause)
        if self.hold:
            await asyncio.Event().wait()


def trade(symbol: str, second: float, price: float, trade_id: str, amount: float = 1.0) -> TradeEvent:
    return TradeEvent(symbol, Trade(int(second * 1000), trade_id, price, amount))


def minutes(count: int, symbol: str = "XRP/ETH") -> list[SourceEvent]:
    """Two trades in each of `count` minutes, then the clock past the last one."""
    events: list[SourceEvent] = []
    for minute in range(count):
        events += [
            trade(symbol, minute * 60 + 1, 10 + minute, f"{minute}a"),
            trade(symbol, minute * 60 + 30, 11 + minute, f"{minute}b"),
        ]
    return [*events, ClockEvent(count * MINUTE_MS)]


def stored(instrument_id: int) -> list[tuple[Any, ...]]:
    return list(
        Bar.objects.filter(instrument_id=instrument_id).order_by("time").values_list("time", "close", "volume", "final")
    )


async def run_briefly(collector: Collector, until: Callable[[], Any], timeout: float = 20) -> None:
    """Run the collector until `until()` (called in a worker thread: it may query the database)."""
    task = asyncio.create_task(collector.run())
    try:
        async with asyncio.timeout(timeout):
            while not await sync_to_async(until)():
                assert not task.done() or task.exception() is None, task.exception()
                await asyncio.sleep(0.02)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_database_outage_buffers_bars_backs_off_and_flushes_when_the_database_returns(instrument, monkeypatch):
    # Given a database that refuses every write while `down` is set
    down = True
    attempts = []
    real_store = collector_module._store

    def store(rows):
        attempts.append(len(rows))
        if down:
            raise OperationalError("server closed the connection unexpectedly")
        real_store(rows)

    monkeypatch.setattr(collector_module, "_store", store)
    # ... and a collector whose clock stands still, so its retry time never comes by itself
    collector = Collector(ListSource(minutes(30), hold=True), flush_bars=5, flush_seconds=0.01, clock=lambda: 100.0)

    # When 30 bars close during the outage
    await run_briefly(collector, until=lambda: collector.stats.trades == 60 and len(collector._pending) == 30)

    # Then nothing was lost, and it did not hammer the database: one attempt during the run (then
    # the backoff), one more when it was stopped
    assert len(attempts) == 2
    assert collector.stats.store_failures == 2
    # ... and once the database is back, shutdown's flush stores everything
    down = False
    await collector.flush(force=True)
    rows = await sync_to_async(stored)(instrument.pk)
    assert len(rows) == 30
    assert all(final for *_, final in rows)


async def test_the_outage_buffer_is_bounded_and_drops_the_oldest_bars(instrument, monkeypatch):
    def store(rows):
        raise OperationalError("database is down")

    monkeypatch.setattr(collector_module, "_store", store)
    clock = [0.0]
    collector = Collector(
        ListSource(minutes(20), hold=True),
        flush_bars=1,
        flush_seconds=0.01,
        max_buffered=5,
        clock=lambda: clock[0],
        db_backoff=Backoff(base=1, jitter=0),
    )

    def all_in() -> bool:
        clock[0] += 100  # every retry is due at once
        return collector.stats.trades == 40 and collector.stats.store_failures >= 2

    await run_briefly(collector, until=all_in)
    assert len(collector._pending) <= 5 + 1  # the open bar, stored non-final at shutdown, comes on top
    assert collector.stats.dropped_bars >= 14


async def test_cancelling_stores_the_open_bar_as_not_final_and_reports_stopped(instrument):
    events = [trade("XRP/ETH", 1, 10, "a"), trade("XRP/ETH", 61, 11, "b"), trade("XRP/ETH", 75, 12, "c")]
    collector = Collector(ListSource(events, hold=True), flush_seconds=0.01, health_seconds=10)
    await run_briefly(collector, until=lambda: collector.stats.trades == 3)
    rows = await sync_to_async(stored)(instrument.pk)
    assert [(close, final) for _, close, _, final in rows] == [(10, True), (12, False)]
    status = await sync_to_async(CollectorStatus.objects.get)(name="test")
    assert status.state == "stopped"
    assert status.trades == 3


async def test_partial_bars_are_throttled_and_final_bars_published_once(instrument):
    # Given a client subscribed to the instrument's 1m bars
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(bars_group(instrument.pk, "1m"), channel)
    # When 100 trades arrive within one minute, then the minute closes
    events = [trade("XRP/ETH", 1 + i * 0.5, 10 + i % 7, f"t{i}") for i in range(100)]
    source = ListSource([*events, ClockEvent(MINUTE_MS)], hold=True, pause=0.003)
    collector = Collector(source, flush_seconds=0.01, partial_per_second=50)
    await run_briefly(collector, until=lambda: collector.stats.finals_published == 1)
    # Then at most one partial per publishing tick went out (not one per trade), and one final
    assert 0 < collector.stats.partials_published < 100
    received = await drain(layer, channel)
    frames = bar_frames(received)
    finals = [f for f in frames if f["bar"]["final"]]
    assert len(finals) == 1
    assert finals[0]["bar"]["trades"] == 100
    assert len(frames) == 1 + collector.stats.partials_published


async def drain(layer: Any, channel: str) -> list[dict[str, Any]]:
    """Every message waiting on the channel (until none comes for 0.2 s)."""
    received = []
    while True:
        try:
            async with asyncio.timeout(0.2):
                received.append(await layer.receive(channel))
        except TimeoutError:
            return received


class StalledLayer(InMemoryChannelLayer):
    """A channel layer whose broadcasts wait until `released` is set: Redis hanging."""

    released = asyncio.Event()

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        await self.released.wait()
        await super().group_send(group, message)


async def test_storing_goes_on_while_the_channel_layer_hangs_and_the_bars_go_out_in_order_after(instrument, settings):
    # Given a channel layer that does not answer, and a subscriber
    StalledLayer.released = asyncio.Event()
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": f"{__name__}.StalledLayer"}}
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(bars_group(instrument.pk, "1m"), channel)

    # When four minutes close one after the other
    events: list[SourceEvent] = []
    for minute in range(4):
        events += [trade("XRP/ETH", minute * 60 + 1, 10 + minute, f"{minute}a"), ClockEvent((minute + 1) * MINUTE_MS)]
    collector = Collector(ListSource(events, hold=True, pause=0.02), flush_seconds=0.01, partial_per_second=0)
    task = asyncio.create_task(collector.run())
    try:
        # Then they are all stored while none could be published
        async with asyncio.timeout(10):
            while collector.stats.bars_stored < 4:
                await asyncio.sleep(0.01)
        assert collector.stats.finals_published == 0
        # And once the layer answers, the subscriber gets each of them once, in order
        StalledLayer.released.set()
        async with asyncio.timeout(10):
            while collector.stats.finals_published < 4:
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    received = await drain(layer, channel)
    assert [frame["bar"]["close"] for frame in bar_frames(received)] == [10, 11, 12, 13]


async def test_a_late_trade_within_the_grace_period_corrects_the_stored_bar_and_republishes_it(instrument):
    events: list[SourceEvent] = [
        trade("XRP/ETH", 10, 10.0, "a"),
        trade("XRP/ETH", 65, 11.0, "b"),  # closes minute 0
        trade("XRP/ETH", 59, 9.0, "late", amount=2.0),  # minute 0 again, 6 s after it closed
        ClockEvent(3 * MINUTE_MS),
        trade("XRP/ETH", 30, 8.0, "too-late"),  # minute 0, two minutes after it closed
    ]
    layer = get_channel_layer()
    await layer.group_add(bars_group(instrument.pk, "1m"), await layer.new_channel())  # someone listens
    collector = Collector(ListSource(events, hold=True), flush_seconds=0.01, late_grace_ms=10_000)
    await run_briefly(collector, until=lambda: collector.stats.trades == 4 and collector.stats.finals_published == 3)
    rows = await sync_to_async(stored)(instrument.pk)
    assert rows[0][1:] == (9.0, 3.0, True)  # the late trade's close and volume are in
    stats = collector.tracked["XRP/ETH"].builder.stats
    assert (stats.corrections, stats.late) == (1, 1)
    assert collector.stats.finals_published == 3  # minute 0, its correction, minute 1


@pytest.fixture
def futures_exchange(exchange):
    return Instrument.objects.create(exchange=exchange, symbol="SUSHI/USDT")


async def test_an_instrument_added_in_the_database_starts_streaming_without_a_restart(futures_exchange, exchange):
    from market.sources.binance import BinanceSource
    from market.sources.resilience import RetryPolicy

    messages = messages_from_cryptofeed(SAMPLE_DATA / "cryptofeed" / "BINANCE_FUTURES.ws.1.0")
    hold = len(messages) // 3
    async with BinanceServer(messages, hold_at=hold) as server:
        source = BinanceSource(
            ws_url=server.ws_url, rest_url=server.rest_url, clock_lag_ms=0, policy=RetryPolicy(stall_seconds=30)
        )
        collector = Collector(source, flush_seconds=0.01, symbols_refresh_seconds=0.05)
        task = asyncio.create_task(collector.run())
        try:
            async with asyncio.timeout(20):
                while server.cursor < hold:
                    await asyncio.sleep(0.02)
                # When an instrument is added while it runs
                ctk = await sync_to_async(Instrument.objects.create)(exchange=exchange, symbol="CTK/USDT")
                while not server.subscribe_requests:
                    await asyncio.sleep(0.02)
                server.release()
                while not (
                    server.finished
                    and collector.stats.trades
                    == sum(server.sent_by_stream[s] for s in server.sent_by_stream if "aggTrade" in s)
                ):
                    await asyncio.sleep(0.02)
                # And when it is deactivated again
                await sync_to_async(Instrument.objects.filter(pk=ctk.pk).update)(active=False)
                while len(server.subscribe_requests) < 2:
                    await asyncio.sleep(0.02)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    # Then it was subscribed on the open connection, streamed, and unsubscribed
    assert [r["method"] for r in server.subscribe_requests] == ["SUBSCRIBE", "UNSUBSCRIBE"]
    assert server.connections == 1
    assert server.sent_by_stream["ctkusdt@aggTrade"] > 0
    assert await sync_to_async(Bar.objects.filter(instrument=ctk).exists)()


async def test_a_stock_collector_idles_outside_the_session_and_resumes_at_the_open(instrument):
    # Given a fake wall clock 0.3 s before the early close of 2024-07-03 (13:00 New York)
    offset = [datetime(2024, 7, 3, 16, 59, 59, 700_000, tzinfo=UTC) - datetime.now(UTC)]
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        if seconds >= 1:  # idling: let the fake day pass at once
            slept.append(seconds)
            offset[0] += timedelta(seconds=seconds)
        await asyncio.sleep(0.001)

    source = ListSource([trade("XRP/ETH", 1, 10, "a"), trade("XRP/ETH", 5, 11, "b")], hold=True, calendar="XNYS")
    collector = Collector(source, flush_seconds=0.01, now=lambda: datetime.now(UTC) + offset[0], sleep=fake_sleep)

    # When it runs through the close and the holiday (4 July) to the next open
    await run_briefly(collector, until=lambda: source.starts == 2)

    # Then it streamed, stopped at the close (closing the open bar), idled, and started again on 5 July
    idle = (datetime(2024, 7, 5, 13, 30, tzinfo=UTC) - datetime(2024, 7, 3, 17, 0, tzinfo=UTC)).total_seconds()
    assert idle - 60 <= sum(slept) <= idle + 60
    rows = await sync_to_async(stored)(instrument.pk)
    assert rows[0][3] is True


async def test_health_is_stored_and_a_silent_collector_makes_ready_fail(instrument, client):
    collector = Collector(
        ListSource(minutes(3), hold=True), name="binance-0of2", flush_seconds=0.01, health_seconds=0.05
    )
    await run_briefly(collector, until=lambda: CollectorStatus.objects.filter(trades=6).exists())
    status = await sync_to_async(CollectorStatus.objects.get)(name="binance-0of2")
    assert status.state == "stopped"
    assert (status.messages, status.trades, status.bars_stored) == (7, 6, 3)
    assert status.counters["instruments"] == [instrument.pk]  # what collector-down alert rules read

    # A collector that died without saying so (SIGKILL): running, and silent since long ago
    await sync_to_async(CollectorStatus.objects.filter(pk=status.pk).update)(
        state="streaming", updated_at=timezone.now() - timedelta(minutes=10)
    )
    response = await sync_to_async(client.get)("/ready")
    assert response.status_code == 503
    assert response.json()["failing"] == ["collectors"]
    assert "binance-0of2" in response.json()["components"]["collectors"]
    # The web container's own health check leaves the collectors to their own alert
    skipped = await sync_to_async(client.get)("/ready?skip=collectors")
    assert skipped.status_code == 200


async def test_a_gap_the_source_cannot_fill_goes_to_the_bar_backfill(instrument, monkeypatch):
    calls = []
    monkeypatch.setattr("market.backfill.request_gap_fill", lambda *args: calls.append(args))
    collector = Collector(ListSource([GapEvent("XRP/ETH", 0, 600_000, "too old")], hold=True), flush_seconds=0.01)
    await run_briefly(collector, until=lambda: collector.stats.gaps_backfill_requested == 1)
    assert calls == [(instrument.pk, datetime(1970, 1, 1, tzinfo=UTC), datetime(1970, 1, 1, 0, 10, tzinfo=UTC))]


def test_shards_split_the_symbols_between_collectors():
    symbols = [f"S{i}/USDT" for i in range(100)]
    shards = [[s for s in symbols if in_shard(s, (i, 3))] for i in range(3)]
    assert sorted(s for shard in shards for s in shard) == sorted(symbols)
    assert all(shards)


def test_a_plain_mapping_is_a_subscription_that_never_changes():
    subscription = as_subscription({"A": None})
    assert dict(subscription) == {"A": None}
    assert subscription.version == 0


async def test_the_api_lists_each_collectors_health_and_says_which_are_stale(instrument, client, settings):
    settings.PUBLIC_MARKET_DATA = True
    collector = Collector(ListSource(minutes(2), hold=True), name="binance", flush_seconds=0.01, health_seconds=0.05)
    await run_briefly(collector, until=lambda: CollectorStatus.objects.filter(trades=4).exists())
    now = timezone.now()
    await sync_to_async(CollectorStatus.objects.create)(
        name="yahoo", source="yahoo", state="streaming", started_at=now, updated_at=now - timedelta(hours=1)
    )
    response = await sync_to_async(client.get)("/api/v1/collectors/")
    assert response.status_code == 200
    rows = {row["name"]: row for row in response.json()["results"]}
    assert rows["binance"]["state"] == "stopped"
    assert rows["binance"]["trades"] == 4
    assert (rows["binance"]["stale"], rows["yahoo"]["stale"]) == (False, True)
    detail = await sync_to_async(client.get)("/api/v1/collectors/yahoo/")
    assert detail.json()["source"] == "yahoo"


@pytest.mark.parametrize(
    ("source", "kind", "calendar"),
    [
        ("binance", "BinanceSource", None),
        ("binance-futures", "BinanceSource", None),
        ("alpaca", "AlpacaSource", "XNYS"),
        ("alpaca-crypto", "AlpacaSource", None),
        ("yahoo", "YahooSource", None),
    ],
)
def test_the_collect_command_builds_each_live_source_from_settings(source, kind, calendar, settings):
    from market.management.commands.collect import build_collector

    settings.ALPACA_API_KEY = "key-from-settings"
    collector = build_collector(
        {"source": source, "speed": 60.0, "loop": True, "recording": [], "name": "", "shard": ""}
    )
    assert type(collector.source).__name__ == kind
    assert collector.name == source
    assert collector.calendar == calendar
    assert collector.symbols_refresh_seconds == settings.COLLECTOR_SYMBOLS_REFRESH_SECONDS
    if source.startswith("alpaca"):
        assert collector.source.api_key == "key-from-settings"  # type: ignore[attr-defined]
    if source == "binance-futures":
        assert collector.source.exchange == "binance-futures"
        assert collector.source.ws_url == settings.BINANCE_FUTURES_WS_URL  # type: ignore[attr-defined]
        assert collector.source.rest_url == settings.BINANCE_FUTURES_API_URL  # type: ignore[attr-defined]


def all_stored(instrument_id: int) -> list[tuple[Any, ...]]:
    fields = ("time", "open", "high", "low", "close", "volume", "trades", "vwap", "final")
    return list(Bar.objects.filter(instrument_id=instrument_id).order_by("time").values_list(*fields))


async def test_trades_that_come_in_runs_store_the_same_bars_as_trades_one_by_one(instrument):
    # Given 1,500 recorded XRP/ETH aggregate trades as Binance sends them, with resends mixed in
    texts = [m.text for m in messages_from_ccxt_trades(XRP_OLD, "XRPETH", count=1500) if m.kind == "aggTrade"]
    texts = [*texts[:700], *texts[650:720], *texts[700:]]
    parser_one, parser_many = BinanceParser(SourceHealth()), BinanceParser(SourceHealth())
    for parser in (parser_one, parser_many):
        parser.track("XRP/ETH")
    one_by_one = events_one_by_one(parser_one, texts)
    in_runs = [
        event for start in range(0, len(texts), 100) for event in parser_many.parse_many(texts[start : start + 100])
    ]
    assert any(isinstance(event, TradeBatch) and len(event.run) > 50 for event in in_runs)

    # When one collector takes the trades one by one and another (after a clean slate) in runs
    first = await Collector(ListSource(one_by_one)).run()
    expected = await sync_to_async(all_stored)(instrument.id)
    await sync_to_async(Bar.objects.all().delete)()
    second = await Collector(ListSource(in_runs)).run()

    # Then they stored the same bars, every field alike, and counted the same
    assert await sync_to_async(all_stored)(instrument.id) == expected
    assert len(expected) > 100
    assert (second.trades, second.bars_stored, second.events) == (first.trades, first.bars_stored, first.events)


def test_preparing_a_collector_process_loads_the_indicator_engine_freezes_the_heap_and_shortens_gil_turns():
    import gc
    import sys

    switch = sys.getswitchinterval()
    try:
        collector_module.prepare_process()
        assert "pandas_ta" in sys.modules  # its first use would otherwise come in the middle of a catch-up
        assert gc.get_freeze_count() > 100_000  # Django, pandas, numba: out of the cyclic collector's sight
        assert sys.getswitchinterval() == pytest.approx(collector_module.GIL_SWITCH_SECONDS)
    finally:
        gc.unfreeze()  # this is a test process, not a collector
        sys.setswitchinterval(switch)

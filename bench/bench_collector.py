"""The live collector: trade-message throughput, whole pipeline against the parsing floor, and the
latency from a bar's close to a WebSocket client.

Workload: the 12,477 XRP/ETH aggregate trades Binance recorded (the `info` payloads of freqtrade's
XRP_OLD-trades, i.e. Binance's own aggTrade fields) as combined-stream messages
`{"stream": "xrpeth@aggTrade", "data": {...}}`, repeated 20 times, each repetition moved 3 days
forward with its trade ids continuing where the one before ended: 249,540 messages making 49,380
one-minute bars. (This pair trades about 5 times a minute, so there is a bar for every 5 trades: far
more bars per trade than a busy market, which makes storing and publishing weigh more here than
they would live.)

Measured side by side, best of a few rounds (the machine is shared, see bench/README):
- floor: `orjson.loads` of each message, nothing else;
- parse: the Binance adapter's parser, 2,000 messages at a time as a replay reads them
  (`BinanceParser.parse_many`: validation, trade-id coverage, the runs of consecutive trades
  gathered into TradeBatch events);
- parse_build: the same plus deduplication and 1m bar building (`BarBuilder.add_run`; the pure core,
  no I/O);
- pipeline: one `Collector` doing all of it (the messages parsed as above, the runs reaching it as
  TradeBatch events, as a REST catch-up's pages do; the process prepared with
  `collector.prepare_process` as `manage.py collect` prepares its own), storing final bars through the bar
  store and publishing them to the channel layer, as fast as possible. Goal: 200,000 messages/s. Twice: with
  nobody subscribed to the instrument (the collector then skips publishing, after asking Redis in
  one round trip; most instruments, most of the time), and with one subscriber (every final bar is
  broadcast with its live indicator values: one channels_redis group_send per series and batch of
  stored bars, `market.services.bar_batch_messages`);
- websocket_adapter: the live adapter itself receiving the messages from a local websocket server
  (transport included, nothing stored): what one connection can take.
Then the latency from the moment a minute's bar closes (the clock event reaches the collector) to
the moment a WebSocket client subscribed to the instrument receives the final bar, p50 and p99,
over 120 bar closes: through `manage.py serve` (daphne) and Redis when REDIS_URL is set, otherwise
in one process through the in-memory channel layer. Goal: p99 under 50 ms.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson

from bench import BenchUnavailable, best_rate, measurement
from cryptostock.webserver import NotServing, wait_until_serving

ROOT = Path(__file__).resolve().parents[1]
RECORDING = ROOT / "sample_data" / "freqtrade" / "XRP_OLD-trades.json.gz"
REPEATS = 20
SHIFT_MS = 3 * 86_400_000
ROUNDS = 3
LATENCY_BARS = 120
LATENCY_GAP_SECONDS = 0.05
UNIT = "messages/s"
CHUNK = 2000  # messages parsed at a time, as the replay source reads them


def recorded_rows() -> list[dict[str, Any]]:
    with gzip.open(RECORDING, "rt") as handle:
        return [trade["info"] for trade in json.load(handle)]


def stream_messages(rows: list[dict[str, Any]], repeats: int) -> list[bytes]:
    """Each repetition 3 days later, its aggregate trade ids carrying on where the one before ended:
    the recording's ids have no holes, so neither has the stream (a jump in the ids would send the
    live adapter to fetch the "missing" trades over REST, as it must for a real gap)."""
    messages = []
    span = rows[-1]["a"] - rows[0]["a"] + 1
    for k in range(repeats):
        shift, id_shift = k * SHIFT_MS, k * span
        for row in rows:
            data = {"e": "aggTrade", "E": row["T"] + shift, "s": "XRPETH", **row}
            data.update(a=row["a"] + id_shift, T=row["T"] + shift)
            messages.append(orjson.dumps({"stream": "xrpeth@aggTrade", "data": data}))
    return messages


def floor(messages: list[bytes]) -> None:
    loads = orjson.loads
    for raw in messages:
        loads(raw)


def parse(messages: list[bytes]) -> None:
    from market.sources.base import SourceHealth
    from market.sources.binance import BinanceParser

    parser = BinanceParser(SourceHealth())
    parser.track("XRP/ETH")
    for start in range(0, len(messages), CHUNK):
        parser.parse_many(messages[start : start + CHUNK])


def parse_build(messages: list[bytes]) -> None:
    from market.bars import BarBuilder
    from market.sources.base import ClockEvent, SourceHealth, TradeBatch, TradeEvent
    from market.sources.binance import BinanceParser

    parser = BinanceParser(SourceHealth())
    parser.track("XRP/ETH")
    builder = BarBuilder()
    for start in range(0, len(messages), CHUNK):
        for event in parser.parse_many(messages[start : start + CHUNK]):
            if type(event) is TradeBatch:
                builder.add_run(event.run)
            elif type(event) is TradeEvent:
                builder.add(event.trade)
            elif type(event) is ClockEvent:
                builder.close_until(event.time_ms)


def recorded_stream_source(messages: list[bytes]) -> Any:
    """A source that parses recorded raw messages with the live adapter's parser, as fast as it can."""
    from market.sources.base import Source, SourceEvent
    from market.sources.binance import BinanceParser

    class RecordedStream(Source):
        name = "bench"
        exchange = "binance"

        async def stream(self, symbols: Mapping[str, int | None]) -> AsyncGenerator[SourceEvent, None]:
            parser = BinanceParser(self.health)
            for symbol in symbols:
                parser.track(symbol)
            for start in range(0, len(messages), CHUNK):
                for event in parser.parse_many(messages[start : start + CHUNK]):
                    yield event
                await asyncio.sleep(0)  # let the flusher and publisher run

    return RecordedStream()


def make_instrument() -> int:
    from market.models import Exchange, Instrument

    exchange, _ = Exchange.objects.get_or_create(code="binance", defaults={"name": "Binance"})
    instrument, _ = Instrument.objects.get_or_create(exchange=exchange, symbol="XRP/ETH")
    return instrument.pk


def clear_bars(instrument_id: int) -> None:
    from market.models import Bar

    Bar.objects.filter(instrument_id=instrument_id).delete()


def pipeline(messages: list[bytes], instrument_id: int, *, subscribed: bool) -> tuple[float, Any]:
    from market.collector import Collector

    clear_bars(instrument_id)
    collector = Collector(recorded_stream_source(messages), flush_bars=2000, flush_seconds=0.05)

    async def run() -> tuple[float, Any]:
        from channels.layers import get_channel_layer

        from market.groups import bars_group

        layer = get_channel_layer()
        group = bars_group(instrument_id, "1m")
        channel = await layer.new_channel()
        if subscribed:  # a client that reads nothing: every bar is sent, the channel's capacity drops the rest
            await layer.group_add(group, channel)
        started = time.perf_counter()
        stats = await collector.run()  # returns once the last bar is stored and published
        elapsed = time.perf_counter() - started
        await layer.group_discard(group, channel)
        return len(messages) / elapsed, stats

    return asyncio.run(run())


async def websocket_adapter(messages: list[bytes]) -> float:
    """The live Binance adapter receiving over a local websocket, nothing stored."""
    from market.sources.binance import BinanceSource
    from market.sources.resilience import RetryPolicy
    from market.tests.servers.binance import BinanceServer, Message

    wrapped = [Message("xrpeth@aggTrade", "XRPETH", "aggTrade", raw.decode()) for raw in messages]
    async with BinanceServer(wrapped) as server:
        source = BinanceSource(ws_url=server.ws_url, rest_url=server.rest_url, policy=RetryPolicy(stall_seconds=10))
        received = 0
        started = time.perf_counter()
        async for _ in source.stream({"XRP/ETH": None}):
            received += 1
            if received >= len(messages) - 1000:  # a few clock events are counted too
                break
        return received / (time.perf_counter() - started)


# --- latency -----------------------------------------------------------------------------------


def latency_source(rows: list[dict[str, Any]], closed_at: dict[int, float]) -> Any:
    """A minute of recorded trades at a time, then that minute's close, every LATENCY_GAP_SECONDS."""
    from market.bars import MINUTE_MS
    from market.sources.base import ClockEvent, Source, SourceEvent, TradeEvent
    from market.sources.binance import trade_from_rest

    minutes: dict[int, list[Any]] = {}
    for row in rows:
        minutes.setdefault(row["T"] - row["T"] % MINUTE_MS, []).append(trade_from_rest(row))

    class Paced(Source):
        name = "bench-latency"
        exchange = "binance"

        async def stream(self, symbols: Mapping[str, int | None]) -> AsyncGenerator[SourceEvent, None]:
            for minute in sorted(minutes)[:LATENCY_BARS]:
                for trade in minutes[minute]:
                    yield TradeEvent("XRP/ETH", trade)
                await asyncio.sleep(LATENCY_GAP_SECONDS)
                closed_at[minute // 1000] = time.perf_counter()
                yield ClockEvent(minute + MINUTE_MS)
            await asyncio.sleep(0.5)

    return Paced()


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered), p99


async def receive_finals(receive: Callable[[], Any], received_at: dict[int, float], count: int) -> None:
    while len(received_at) < count:
        message = await receive()
        if message.get("type") == "bar" and message["bar"]["final"]:
            received_at.setdefault(message["bar"]["time"], time.perf_counter())


async def latency_in_process(rows: list[dict[str, Any]], instrument_id: int) -> list[float]:
    from channels.testing import WebsocketCommunicator

    from cryptostock.asgi import application
    from market.collector import Collector

    closed_at: dict[int, float] = {}
    received_at: dict[int, float] = {}
    client = WebsocketCommunicator(application, "/ws/v1/market/")
    await client.connect()
    await client.send_json_to({"action": "subscribe", "instrument": instrument_id, "timeframe": "1m"})
    await client.receive_json_from(timeout=10)  # the snapshot
    receiver = asyncio.create_task(
        receive_finals(lambda: client.receive_json_from(timeout=30), received_at, LATENCY_BARS)
    )
    await Collector(latency_source(rows, closed_at), flush_seconds=0.05).run()
    await asyncio.wait_for(receiver, timeout=30)
    await client.disconnect()
    return [(received_at[t] - closed_at[t]) * 1000 for t in closed_at if t in received_at]


def use_private_channel_prefix() -> None:
    """Redis keeps group members of crashed consumers for a day: a prefix of our own keeps other
    runs' stale subscribers out of the measurement. The latency's server gets it too."""
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if hasattr(layer, "prefix"):
        prefix = f"bench{os.getpid()}"
        layer.prefix = prefix
        os.environ["CHANNEL_PREFIX"] = prefix


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PUBLIC_MARKET_DATA": "1", "LOG_LEVEL": "WARNING"}
    process = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_serving(f"http://127.0.0.1:{port}/health", process)
    except NotServing as failure:
        process.kill()
        raise BenchUnavailable(f"manage.py serve did not start: {failure}") from None
    return process


async def latency_through_daphne(rows: list[dict[str, Any]], instrument_id: int, port: int) -> list[float]:
    import websockets

    from market.collector import Collector

    closed_at: dict[int, float] = {}
    received_at: dict[int, float] = {}
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws/v1/market/") as client:
        await client.send(json.dumps({"action": "subscribe", "instrument": instrument_id, "timeframe": "1m"}))
        await client.recv()  # the snapshot

        async def receive() -> Any:
            return json.loads(await client.recv())

        receiver = asyncio.create_task(receive_finals(receive, received_at, LATENCY_BARS))
        await Collector(latency_source(rows, closed_at), flush_seconds=0.05).run()
        await asyncio.wait_for(receiver, timeout=30)
    return [(received_at[t] - closed_at[t]) * 1000 for t in closed_at if t in received_at]


def latency(rows: list[dict[str, Any]], instrument_id: int) -> tuple[str, list[float]]:
    clear_bars(instrument_id)
    if not os.environ.get("REDIS_URL"):
        from django.test import override_settings

        with override_settings(PUBLIC_MARKET_DATA=True):  # as the server below gets it: no sign-in
            return "inprocess", asyncio.run(latency_in_process(rows, instrument_id))
    port = free_port()
    server = start_server(port)
    try:
        return "daphne_redis", asyncio.run(latency_through_daphne(rows, instrument_id, port))
    finally:
        server.terminate()
        server.wait(timeout=20)


def run() -> Iterator[dict[str, Any]]:
    import logging

    from django.db import connection

    from market.collector import prepare_process

    # A subscriber that reads nothing fills its channel: channels_redis logs every bar it then drops.
    logging.getLogger("channels_redis").setLevel(logging.WARNING)

    rows = recorded_rows()
    messages = stream_messages(rows, REPEATS)
    count = len(messages)
    floor_rate = best_rate(count, lambda: floor(messages), ROUNDS)
    yield measurement("collector.floor.orjson_loads", floor_rate, UNIT)
    yield measurement("collector.parse.vs_floor", best_rate(count, lambda: parse(messages), ROUNDS), UNIT, floor_rate)
    yield measurement(
        "collector.parse_build.vs_floor", best_rate(count, lambda: parse_build(messages), ROUNDS), UNIT, floor_rate
    )

    instrument_id = make_instrument()
    use_private_channel_prefix()
    prepare_process()  # as `manage.py collect` does before its collector starts
    vendor = connection.vendor
    layer = "redis" if os.environ.get("REDIS_URL") else "inmemory"
    for subscribed, label in ((False, "no_subscriber"), (True, "one_subscriber")):
        best, stats = 0.0, None
        for _ in range(ROUNDS):
            rate, stats = pipeline(messages, instrument_id, subscribed=subscribed)
            best = max(best, rate)
        if stats is None or stats.bars_stored < 49_000:
            raise RuntimeError(f"the pipeline did not store every bar: {stats}")
        name = f"collector.pipeline.{vendor}.{layer}.{label}"
        yield measurement(f"{name}.vs_floor", best, UNIT, floor_rate)
        yield measurement(f"{name}.vs_goal", best, UNIT, 200_000)
        yield measurement(f"{name}.bars_per_s", best * stats.bars_stored / count, "bars/s")

    adapter = asyncio.run(websocket_adapter(messages[:100_000]))
    yield measurement("collector.websocket_adapter.vs_floor", adapter, UNIT, floor_rate)

    path, samples = latency(rows, instrument_id)
    if len(samples) < LATENCY_BARS * 0.9:
        raise BenchUnavailable(f"only {len(samples)} of {LATENCY_BARS} final bars reached the client")
    p50, p99 = percentiles(samples)
    yield measurement(f"collector.bar_close_to_websocket.{path}.p50", p50, "ms")
    yield measurement(f"collector.bar_close_to_websocket.{path}.p99.vs_goal", p99, "ms", 50)

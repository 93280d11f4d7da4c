"""Live fan-out: bar close to client receipt with many WebSocket clients on one server process.

Workload: 50 instruments, N clients (1,000 first), client i subscribed to the 1m bars of instrument
i % 50, so every final bar goes to N / 50 clients. The clients run in a process of their own
(bench.ws_clients: asyncio + `websockets`), the server in another, the publisher here.

Two ways a minute closes, 5 times each:
- burst: all 50 final bars published at the same instant (every 1m bar closes at the minute);
- spread: the 50 bars one every 20 ms, over one second.
Per scenario: p50 and p99 of (client receipt - the moment the bar was published), wall clock, over
every delivery; and the deliveries lost (expected N x bars, none may be missing: final bars are
never dropped).

Two servers, one after the other in the same run, fed the same bars (the same pre-encoded text):
- channels: the product, `daphne cryptostock.asgi:application` with channels-redis, published the
  way market.services does (group_send of each bar's message);
- floor: bench.ws_floor, a bare `websockets` server relaying Redis pub/sub with
  `websockets.broadcast`; published with one pipelined PUBLISH per bar.
Then clients per process: the burst with 1,000, 2,000, 3,000, 4,000 clients on the product until
p99 passes 1 s. Goals: burst p99 < 100 ms at 1,000 clients, nothing lost, >= 3,000 clients at
p99 < 1 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import orjson

from bench import BenchUnavailable, measurement

ROOT = Path(__file__).resolve().parents[1]
INSTRUMENTS = 50
CLIENTS = 1000
CAPACITY_CLIENTS = (1000, 2000, 3000, 4000)
LAYERS = ("core", "pubsub")  # settings.CHANNEL_REDIS_LAYER
CAPACITY_LAYER = "pubsub"
ROUNDS = 5
ROUND_GAP_SECONDS = 1.5
DRAIN_SECONDS = 3.0
START = datetime(2030, 1, 1, tzinfo=UTC)
_minutes = itertools.count()


def run() -> Iterator[dict[str, Any]]:
    redis_url = os.environ.get("REDIS_URL", "")
    if not redis_url:
        raise BenchUnavailable("needs REDIS_URL: the point is channels-redis between processes")
    prefix = f"benchws{os.getpid()}"
    use_channel_prefix(prefix)
    instrument_ids = create_instruments()

    results: dict[str, dict[str, float]] = {}
    with floor_server(redis_url, prefix) as url:
        results["floor"] = measure(url, instrument_ids, FloorPublisher(redis_url, prefix), CLIENTS)
    for layer in LAYERS:
        with channels_server(prefix, layer) as url:
            results[layer] = measure(url, instrument_ids, ChannelsPublisher(layer), CLIENTS)
    for scenario in ("burst", "spread"):
        for stat in ("p50", "p99"):
            floor = results["floor"][f"{scenario}_{stat}"]
            yield measurement(f"websocket.{CLIENTS}_clients.{scenario}.{stat}.floor", floor, "ms")
            for layer in LAYERS:
                value = results[layer][f"{scenario}_{stat}"]
                name = f"websocket.{CLIENTS}_clients.{scenario}.{stat}.channels_{layer}.vs_floor"
                yield measurement(name, value, "ms", floor)
        for stack in ("floor", *LAYERS):
            yield measurement(
                f"websocket.{CLIENTS}_clients.{scenario}.lost.{stack}", results[stack][f"{scenario}_lost"], "messages"
            )

    layer = CAPACITY_LAYER
    with channels_server(prefix, layer) as url:
        for clients in CAPACITY_CLIENTS:
            burst = measure(url, instrument_ids, ChannelsPublisher(layer), clients, scenarios=("burst",))
            yield measurement(
                f"websocket.capacity.channels_{layer}.{clients}_clients.burst.p99", burst["burst_p99"], "ms"
            )
            lost = burst["burst_lost"]
            yield measurement(f"websocket.capacity.channels_{layer}.{clients}_clients.burst.lost", lost, "messages")
            if burst["burst_p99"] > 1000:
                break


# --- setup ----------------------------------------------------------------------------------------


def use_channel_prefix(prefix: str) -> None:
    """Our own Redis keys: stale members from other runs stay out, and other runs are not disturbed."""
    from channels.layers import get_channel_layer

    os.environ["CHANNEL_PREFIX"] = prefix
    layer = get_channel_layer()
    if hasattr(layer, "prefix"):
        layer.prefix = prefix


def create_instruments() -> list[int]:
    from market.services import ensure_instrument

    return [ensure_instrument("benchws", f"WS{i:02d}/USDT").pk for i in range(INSTRUMENTS)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchUnavailable(f"{what} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise BenchUnavailable(f"{what} did not start within 60 s")


class Server:
    def __init__(self, command: list[str], env: dict[str, str], what: str) -> None:
        self.port = free_port()
        self.what = what
        self.process = subprocess.Popen(
            [part.replace("{port}", str(self.port)) for part in command],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def __enter__(self) -> str:
        wait_for_port(self.port, self.process, self.what)
        return f"ws://127.0.0.1:{self.port}/ws/v1/market/"

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


def channels_server(prefix: str, layer: str) -> Server:
    env = {
        **os.environ,
        "CHANNEL_PREFIX": prefix,
        "CHANNEL_REDIS_LAYER": layer,
        "PUBLIC_MARKET_DATA": "1",
        "LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", "{port}", "cryptostock.asgi:application"]
    return Server(command, env, "daphne")


def floor_server(redis_url: str, prefix: str) -> Server:
    return Server([sys.executable, "-m", "bench.ws_floor", "{port}", redis_url, prefix], dict(os.environ), "ws_floor")


# --- publishing -----------------------------------------------------------------------------------


def final_bar(instrument_id: int, minute: int) -> Any:
    from market.barstore import BarRow

    time_ = START + timedelta(minutes=minute)
    return BarRow(instrument_id, "1m", time_, 1.0, 1.1, 0.9, 1.05, 12.5, 7, 1.01, True)


class ChannelsPublisher:
    """What market.services.publish_bars sends (one message per series and batch, its bars' frames
    encoded once), through the same kind of layer as the server's."""

    def __init__(self, layer: str) -> None:
        self.kind = layer
        self.layer: Any = None

    async def publish(self, rows: list[Any]) -> list[float]:

        if self.layer is None:  # one per event loop: each scenario runs its own
            self.layer = self.open_layer()
            await self.layer.group_send("bench.warm-up", {"type": "warm.up"})  # connect before timing
        from market.services import bar_batch_messages, send_bar_messages

        # As market.services.publish_bars does: the batch in one go (on the core layer three round
        # trips for all its groups; on the pub/sub layer one group_send after the other).
        messages = bar_batch_messages(rows)
        started = time.time()
        await send_bar_messages(self.layer, messages)
        return [started] * len(rows)

    def open_layer(self) -> Any:
        from channels.layers import get_channel_layer
        from django.conf import settings

        layer = get_channel_layer()
        if type(layer).__module__ + "." + type(layer).__name__ == settings.CHANNEL_REDIS_BACKENDS[self.kind]:
            return layer
        from channels_redis.pubsub import RedisPubSubChannelLayer

        config = settings.CHANNEL_LAYERS["default"]["CONFIG"]
        return RedisPubSubChannelLayer(hosts=config["hosts"], prefix=os.environ["CHANNEL_PREFIX"])

    async def close(self) -> None:
        if self.layer is not None and self.kind == "pubsub":
            await self.layer.flush()  # the pub/sub layer's flush only closes its connections
        self.layer = None


class FloorPublisher:
    """One pipelined PUBLISH per batch of bars, of the same text."""

    def __init__(self, redis_url: str, prefix: str) -> None:
        self.redis_url = redis_url
        self.prefix = prefix
        self.client: Any = None

    async def publish(self, rows: list[Any]) -> list[float]:
        import redis.asyncio as redis

        from market.services import bar_message

        if self.client is None:  # one per event loop: each scenario runs its own
            self.client = redis.from_url(self.redis_url)
            await self.client.publish(f"{self.prefix}.warm-up", "")  # connect before timing

        texts = [(row.instrument_id, bar_message(row, indicators=None)["text"]) for row in rows]
        published_at = [time.time()] * len(rows)
        pipe = self.client.pipeline(transaction=False)
        for instrument_id, text in texts:
            pipe.publish(f"{self.prefix}.{instrument_id}", text)
        await pipe.execute()
        return published_at

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
            self.client = None


async def publish_rounds(publisher: Any, instrument_ids: list[int], scenario: str) -> dict[tuple[int, int], float]:
    """Five minutes closing, as a burst or spread over a second; when each bar was published."""
    published: dict[tuple[int, int], float] = {}
    for _ in range(ROUNDS):
        minute = next(_minutes)
        rows = [final_bar(instrument_id, minute) for instrument_id in instrument_ids]
        if scenario == "burst":
            times = await publisher.publish(rows)
        else:
            times = []
            for row in rows:
                times += await publisher.publish([row])
                await asyncio.sleep(1 / len(rows))
        for row, at in zip(rows, times, strict=True):
            published[(row.instrument_id, int(row.time.timestamp()))] = at
        await asyncio.sleep(ROUND_GAP_SECONDS)
    return published


# --- measuring ------------------------------------------------------------------------------------


def start_clients(url: str, count: int, instrument_ids: list[int]) -> subprocess.Popen[str]:
    ids = ",".join(map(str, instrument_ids))
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.ws_clients", url, str(count), ids],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    ready = process.stdout.readline().split()
    if ready[:1] != ["ready"] or int(ready[1]) != count:
        process.kill()
        raise BenchUnavailable(f"only {ready[1:] or 'no'} of {count} clients connected")
    return process


def ask(process: subprocess.Popen[str], command: str) -> str:
    stdin, stdout = process.stdin, process.stdout
    assert stdin is not None
    assert stdout is not None
    stdin.write(command + "\n")
    stdin.flush()
    return stdout.readline() if command == "report" else ""


def measure(
    url: str, instrument_ids: list[int], publisher: Any, clients: int, scenarios: tuple[str, ...] = ("burst", "spread")
) -> dict[str, float]:
    progress(f"{clients} clients connecting to {url}")
    process = start_clients(url, clients, instrument_ids)
    progress(f"{clients} clients subscribed")
    subscribers = Counter(instrument_ids[i % len(instrument_ids)] for i in range(clients))
    results: dict[str, float] = {}
    try:
        for scenario in scenarios:
            published = asyncio.run(publish_and_drain(publisher, instrument_ids, scenario))
            receipts = orjson.loads(ask(process, "report"))
            results.update(summarize(scenario, published, receipts, subscribers))
            progress(f"{scenario}: {results}")
    finally:
        ask(process, "quit")
        close_quietly(process.stdin)
        process.wait(timeout=30)
    return results


async def publish_and_drain(publisher: Any, instrument_ids: list[int], scenario: str) -> dict[tuple[int, int], float]:
    try:
        published = await publish_rounds(publisher, instrument_ids, scenario)
        await asyncio.sleep(DRAIN_SECONDS)
    finally:
        await publisher.close()
    return published


def summarize(
    scenario: str, published: dict[tuple[int, int], float], receipts: list[list[Any]], subscribers: Counter[int]
) -> dict[str, float]:
    latencies = sorted(
        (received - published[(instrument, bar_time)]) * 1000
        for instrument, bar_time, received in receipts
        if (instrument, bar_time) in published
    )
    expected = sum(subscribers[instrument] for instrument, _ in published)
    return {
        f"{scenario}_p50": percentile(latencies, 0.50),
        f"{scenario}_p99": percentile(latencies, 0.99),
        f"{scenario}_lost": float(expected - len(latencies)),
    }


def progress(text: str) -> None:
    print(f"bench websocket: {text}", file=sys.stderr, flush=True)


def percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def close_quietly(handle: IO[str] | None) -> None:
    if handle is not None:
        with contextlib.suppress(OSError):
            handle.close()

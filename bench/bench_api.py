"""The bars endpoint under load: 1,000 bars (~95 KB of JSON) per request, `wrk -t2 -c16` from a
separate process, against the production server setup, side by side with the floor.

- floor: `bench/api_floor.py`, a raw ASGI handler under uvicorn with 2 workers running the same
  SQL with a small psycopg connection pool per worker and orjson; no auth, middleware or framework.
- web2: the product as docker-compose runs it: `python -m cryptostock.webserver --workers 2` (two
  daphne processes on one socket, the floor's worker count), Django's psycopg pool (DB_POOL_SIZE=8),
  a viewer's JWT, rate limits on (with a limit high enough not to refuse), the bars cache off
  (`uncached`) and on (`cached`: every request the same range, served from the cache).
- web2.nopool: the same without the pool (a new database connection per request), for the choice.
- uvicorn2: the same Django application under uvicorn with 2 workers, for orientation (is the
  server or Django the cost?).

Goals (issue 6): uncached >= 0.5x the floor with p99 < 100 ms; cached >= 1.0x the floor.
Needs PostgreSQL (the scratch database of bench.run), wrk (Debian package) and uvicorn (dev only);
REDIS_URL makes the cache and rate-limit counters Redis, as in production.

`DATABASE_URL=postgres://... REDIS_URL=redis://127.0.0.1:6379/5 python -m bench.run api`
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import median
from typing import Any

from bench import BenchUnavailable, measurement
from cryptostock.webserver import wait_until_serving

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
BARS = 5_000
LIMIT = 1_000
DURATION = os.environ.get("BENCH_API_SECONDS", "10")
WARMUP = "2"
START = datetime(2024, 1, 1, tzinfo=UTC)


def run() -> Iterator[dict[str, Any]]:
    from django.db import connection

    if connection.vendor != "postgresql":
        raise BenchUnavailable("needs PostgreSQL (DATABASE_URL=postgres://...)")
    if shutil.which("wrk") is None:
        raise BenchUnavailable("needs wrk (apt-get install wrk)")
    if shutil.which("uvicorn", path=str(BIN)) is None:
        raise BenchUnavailable("needs uvicorn in the virtualenv (pip install uvicorn)")

    instrument, token = seed()
    path = f"/api/v1/bars/?instrument={instrument}&timeframe=1m&limit={LIMIT}"
    auth = f"Authorization: Bearer {token}"

    floors = []
    for name, command, pool_size, cache_seconds in VARIANTS:
        # The floor again right before each variant: on a shared machine the load drifts within a
        # run, and a ratio means something only between two measurements taken close together.
        floor = measure("floor", floor_command, path, headers=[])
        floors.append(floor)
        env = {"DB_POOL_SIZE": pool_size, "API_BARS_CACHE_SECONDS": cache_seconds}
        result = measure(name, command, path, headers=[auth], env=env, expected=floor["body"])
        yield measurement(f"api.bars.{name}.vs_floor", result["rps"], "req/s", baseline=floor["rps"])
        yield measurement(f"api.bars.{name}.p99", result["p99_ms"], "ms", baseline=floor["p99_ms"])
        # CPU the server's processes spent per request: what load from other work does not change
        # much, so it tells where a ratio would go on a quiet machine (PostgreSQL's share not counted).
        yield measurement(
            f"api.bars.{name}.server_cpu_ms_per_request", result["cpu_ms"], "ms", baseline=floor["cpu_ms"]
        )
    yield measurement("api.bars.floor.uvicorn2_psycopg_orjson", median(f["rps"] for f in floors), "req/s")
    yield measurement("api.bars.floor.p99", median(f["p99_ms"] for f in floors), "ms")
    yield measurement("api.bars.floor.server_cpu_ms_per_request", median(f["cpu_ms"] for f in floors), "ms")


def seed() -> tuple[int, str]:
    from django.contrib.auth import get_user_model
    from rest_framework_simplejwt.tokens import AccessToken

    from accounts.services import set_role
    from market.bars_cache import invalidate_cached_bars
    from market.barstore import BarRow
    from market.models import Exchange, Instrument
    from market.services import store_bars

    exchange = Exchange.objects.create(code="bench", name="Bench")
    instrument = Instrument.objects.create(exchange=exchange, symbol="BTC/USDT")
    rows = []
    price = 40_000.0
    for minute in range(BARS):
        # Prices with cents, as an exchange quotes them (the body is then ~100 KB, like real data).
        close = round(price * (1 + ((minute * 7919) % 201 - 100) / 100_000), 2)
        low, high = round(min(price, close) * 0.9995, 2), round(max(price, close) * 1.0005, 2)
        opened = START + timedelta(minutes=minute)
        rows.append(BarRow(instrument.pk, "1m", opened, price, high, low, close, 12.5, 40, None, True))
        price = close
    store_bars(rows, publish=False)
    # The scratch database is new but the cache is not: bodies cached by an earlier run for
    # instrument 1 must not be served for this one.
    invalidate_cached_bars([instrument.pk])
    user = get_user_model().objects.create_user("bench-viewer")
    set_role(user, "viewer")
    return instrument.pk, str(AccessToken.for_user(user))


def server_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DEBUG="0",
        ALLOWED_HOSTS="127.0.0.1",
        LOG_LEVEL="WARNING",
        DB_CONN_MAX_AGE="0",
        # Rate limits stay on (their cache round trip is part of every request) but never refuse.
        API_RATE_USER="100000000/m",
        FLOOR_DATABASE_URL=os.environ["DATABASE_URL"],
        PYTHONPATH=str(ROOT),
    )
    return env


def floor_command(port: int) -> list[str]:
    return [str(BIN / "uvicorn"), "bench.api_floor:app", "--workers", "2", "--port", str(port), "--no-access-log"]


def web_command(port: int) -> list[str]:
    return [sys.executable, "-m", "cryptostock.webserver", "--bind", "127.0.0.1", "--port", str(port), "--workers", "2"]


def django_uvicorn_command(port: int) -> list[str]:
    return [
        *[str(BIN / "uvicorn"), "cryptostock.asgi:application", "--workers", "2", "--port", str(port)],
        *["--no-access-log", "--lifespan", "off"],
    ]


POOL = "8"  # DB_POOL_SIZE of the web service in docker-compose.yml
VARIANTS = [
    ("web2.uncached", web_command, POOL, "0"),
    ("web2.cached", web_command, POOL, "300"),
    ("web2.nopool.uncached", web_command, "0", "0"),
    ("uvicorn2.uncached", django_uvicorn_command, POOL, "0"),
    ("uvicorn2.cached", django_uvicorn_command, POOL, "300"),
]


def measure(
    name: str,
    command: Any,
    path: str,
    *,
    headers: list[str],
    env: dict[str, str] | None = None,
    expected: bytes | None = None,
) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}{path}"
    with server(command(port), {**server_env(), **(env or {})}, url, headers) as (process, body):
        if expected is not None:
            check_same_bars(name, body, expected)
        wrk(url, headers, WARMUP)
        processes = process_tree(process.pid)
        cpu_before = cpu_seconds(processes)
        result = wrk(url, headers, DURATION)
        requests = result["rps"] * float(DURATION)
        result["cpu_ms"] = (cpu_seconds(processes) - cpu_before) / max(requests, 1) * 1e3
    result["body"] = body
    print(f"bench api {name}: {result['rps']:.0f} req/s, p99 {result['p99_ms']:.1f} ms", file=sys.stderr)
    return result


@contextlib.contextmanager
def server(
    command: list[str], env: dict[str, str], url: str, headers: list[str]
) -> Iterator[tuple[subprocess.Popen[bytes], bytes]]:
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield process, wait_until_serving(url, process, headers=dict(header.split(": ", 1) for header in headers))
        except Exception:
            log.seek(0)
            sys.stderr.write(log.read()[-20000:].decode(errors="replace"))
            raise
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def process_tree(pid: int) -> list[int]:
    """The process and its descendants (the server's workers), from /proc."""
    found = [pid]
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            for child in Path(f"/proc/{pid}/task/{task}/children").read_text().split():
                found += process_tree(int(child))
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU time of these processes so far (0 for one that is gone)."""
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def check_same_bars(name: str, body: bytes, expected: bytes) -> None:
    import orjson

    got, want = orjson.loads(body), orjson.loads(expected)
    if got != want or len(got["bars"]) != LIMIT:
        raise RuntimeError(f"{name} answered different bars than the floor")


WRK_LATENCY = re.compile(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
WRK_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
WRK_ERRORS = re.compile(r"Non-2xx or 3xx responses: (\d+)")
UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(url: str, headers: list[str], seconds: str) -> dict[str, Any]:
    command = ["wrk", "-t2", "-c16", f"-d{seconds}s", "--latency"]
    for header in headers:
        command += ["-H", header]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True, timeout=120).stdout
    if errors := WRK_ERRORS.search(output):
        raise RuntimeError(f"{errors.group(1)} requests failed:\n{output}")
    rps = WRK_RPS.search(output)
    p99 = WRK_LATENCY.search(output)
    if rps is None or p99 is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    return {"rps": float(rps.group(1)), "p99_ms": float(p99.group(1)) * UNIT_MS[p99.group(2)]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])

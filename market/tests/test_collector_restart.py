"""Kill the collector process (SIGKILL) mid-stream, start it again: the gap is filled from REST and the
bars are complete. Then SIGTERM: it stores what it has and exits cleanly.

The real `manage.py collect --source binance` runs as a subprocess against the local Binance, on a
fresh SQLite database of its own (the test's database may be in memory, which a subprocess cannot see).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from market.bars import build_bars
from market.sources.binance import trade_from_rest
from market.tests.conftest import SAMPLE_DATA
from market.tests.servers.binance import BinanceServer, messages_from_ccxt_trades

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
XRP_OLD = SAMPLE_DATA / "freqtrade" / "XRP_OLD-trades.json.gz"
TRADES = 1500
SETUP = """
from market.models import Exchange, Instrument
exchange = Exchange.objects.create(code="binance", name="Binance")
Instrument.objects.create(exchange=exchange, symbol="XRP/ETH")
"""


def environment(tmp_path: Path, server: BinanceServer) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        VAR_DIR=str(tmp_path / "var"),
        SECRET_KEY="test-only",
        LOG_LEVEL="WARNING",
        BINANCE_WS_URL=server.ws_url,
        BINANCE_API_URL=server.rest_url,
        COLLECTOR_CLOCK_LAG_MS="0",
        COLLECTOR_BACKOFF_BASE_SECONDS="0.05",
        COLLECTOR_BACKOFF_MAX_SECONDS="0.2",
        COLLECTOR_HEALTH_SECONDS="0.5",
        COLLECTOR_FLUSH_SECONDS="0.05",
        COLLECTOR_MAX_CATCHUP_MINUTES="100000",
        PYTHONUNBUFFERED="1",
    )
    return env


def manage(env: dict[str, str], *args: str) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr[-3000:]


def final_bars(database: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(database, timeout=10) as connection:
        return connection.execute(
            "SELECT time, open, high, low, close, volume, trades, vwap FROM market_bar WHERE final ORDER BY time"
        ).fetchall()


def status(database: Path) -> tuple[Any, ...]:
    with sqlite3.connect(database, timeout=10) as connection:
        return connection.execute(
            "SELECT state, reconnects FROM market_collectorstatus WHERE name='binance'"
        ).fetchone()


async def wait_for(condition, process, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            if process.returncode is not None:
                raise AssertionError(f"the collector exited with {process.returncode}")
            await asyncio.sleep(0.1)


async def start_collector(env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    output = log.open("ab")
    return await asyncio.create_subprocess_exec(
        sys.executable, "manage.py", "collect", "--source", "binance", cwd=REPO, env=env, stdout=output, stderr=output
    )


async def test_a_killed_collector_restarts_fills_the_gap_and_stores_complete_bars(tmp_path):
    messages = messages_from_ccxt_trades(XRP_OLD, "XRPETH", count=TRADES)
    bars = build_bars(trade_from_rest(m.rest_row) for m in messages if m.rest_row is not None)
    database = tmp_path / "db.sqlite3"
    log = tmp_path / "collect.log"
    # The market keeps trading while the collector is dead: 150 messages happen in between.
    async with BinanceServer(messages, pace=600, skip_on_disconnect=150) as server:
        env = environment(tmp_path, server)
        await asyncio.to_thread(manage, env, "migrate", "--noinput", "-v0")
        await asyncio.to_thread(manage, env, "shell", "-c", SETUP)

        # Given a collector streaming for a while
        first = await start_collector(env, log)
        try:
            await wait_for(lambda: server.cursor > len(messages) * 0.4 and len(final_bars(database)) > 20, first, 60)
        finally:
            # When it is killed mid-stream, without a chance to store anything more
            first.send_signal(signal.SIGKILL)
            await first.wait()
        stored_at_kill = len(final_bars(database))
        assert first.returncode == -signal.SIGKILL
        assert stored_at_kill < len(bars)

        # And started again, while the market has moved on
        second = await start_collector(env, log)
        try:
            await wait_for(lambda: server.finished and len(final_bars(database)) >= len(bars), second, 90)
        finally:
            # Then SIGTERM stops it cleanly
            second.send_signal(signal.SIGTERM)
            async with asyncio.timeout(30):
                await second.wait()
    assert second.returncode == 0, log.read_text()[-3000:]

    # The bars are complete: exactly those of the uninterrupted stream, each once
    expected = [(bar.open, bar.high, bar.low, bar.close, bar.volume, bar.trades, bar.vwap) for bar in bars]
    stored = final_bars(database)
    assert [row[1:] for row in stored] == expected
    assert len({row[0] for row in stored}) == len(bars)
    # The restart resumed over REST from the last stored bar, by time
    assert any("startTime" in request for request in server.rest_requests)
    assert status(database)[0] == "stopped"

"""Run one source's collector until stopped; SIGTERM or Ctrl-C store the open bars first.

manage.py collect --source binance
manage.py collect --source binance --shard 0/4      # one of four processes sharing the symbols
manage.py collect --source binance-futures          # USDⓈ-M perpetuals (instruments of binance-futures)
manage.py collect --source replay --speed 0 --recording XRP/ETH=sample_data/freqtrade/XRP_ETH-trades.json.gz
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from market.collector import Collector, CollectorStats, prepare_process
from market.sample import replay_recordings
from market.sources import SOURCE_NAMES, SourceConfig, build_source
from market.sources.resilience import RetryPolicy


def add_collector_arguments(parser: CommandParser, *, flag: str, required: bool) -> None:
    parser.add_argument(
        flag, dest="source", choices=SOURCE_NAMES, required=required, help="Data source to collect from"
    )
    parser.add_argument(
        "--speed", type=float, default=settings.REPLAY_SPEED, help="Replay speed (1 = real time, 0 = max)"
    )
    parser.add_argument(
        "--loop",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Replay: repeat the recording, moved forward in time (default on)",
    )
    parser.add_argument(
        "--recording",
        action="append",
        default=[],
        metavar="SYMBOL=FILE",
        help="Replay: a recording for a symbol (trades, OHLCV or cryptofeed); default: the sample data",
    )
    parser.add_argument("--name", default="", help="Name of this collector's health row (default: the source)")
    parser.add_argument("--shard", default="", metavar="I/N", help="Collect only the I-th of N shards of the symbols")


def parse_shard(raw: str) -> tuple[int, int] | None:
    if not raw:
        return None
    index, _, count = raw.partition("/")
    try:
        shard = int(index), int(count)
    except ValueError:
        raise CommandError(f"--shard {raw!r}: expected I/N, e.g. 0/4") from None
    if not 0 <= shard[0] < shard[1]:
        raise CommandError(f"--shard {raw!r}: I must be between 0 and N-1")
    return shard


def parse_recordings(items: list[str]) -> dict[str, Path]:
    recordings = {}
    for item in items:
        symbol, sep, path = item.partition("=")
        if not sep or not Path(path).exists():
            raise CommandError(f"--recording {item!r}: expected SYMBOL=FILE with an existing file")
        recordings[symbol] = Path(path)
    return recordings


def source_config(options: dict[str, Any]) -> SourceConfig:
    return SourceConfig(
        policy=RetryPolicy(
            breaker_failures=settings.COLLECTOR_BREAKER_FAILURES,
            breaker_reset_seconds=settings.COLLECTOR_BREAKER_RESET_SECONDS,
            backoff_base_seconds=settings.COLLECTOR_BACKOFF_BASE_SECONDS,
            backoff_max_seconds=settings.COLLECTOR_BACKOFF_MAX_SECONDS,
            stall_seconds=settings.COLLECTOR_STALL_SECONDS,
        ),
        clock_lag_ms=settings.COLLECTOR_CLOCK_LAG_MS,
        max_catchup_ms=settings.COLLECTOR_MAX_CATCHUP_MINUTES * 60_000,
        speed=options["speed"],
        loop=options["loop"],
        recordings=parse_recordings(options.get("recording") or []) or replay_recordings(),
        binance_ws_url=settings.BINANCE_WS_URL,
        binance_rest_url=settings.BINANCE_API_URL,
        binance_futures_ws_url=settings.BINANCE_FUTURES_WS_URL,
        binance_futures_rest_url=settings.BINANCE_FUTURES_API_URL,
        alpaca_api_key=settings.ALPACA_API_KEY,
        alpaca_secret_key=settings.ALPACA_SECRET_KEY,
        alpaca_stock_feed=settings.ALPACA_STOCK_FEED,
        alpaca_stock_stream_url=settings.ALPACA_STOCK_STREAM_URL,
        alpaca_crypto_stream_url=settings.ALPACA_CRYPTO_STREAM_URL,
        alpaca_data_url=settings.ALPACA_DATA_URL,
        stock_calendar=settings.SESSION_CALENDAR,
        yahoo_base_url=settings.YAHOO_BASE_URL,
        yahoo_poll_seconds=settings.YAHOO_POLL_SECONDS,
        yahoo_calendar=settings.YAHOO_CALENDAR,
    )


def build_collector(options: dict[str, Any]) -> Collector:
    try:
        source = build_source(options["source"], source_config(options))
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    shard = parse_shard(options.get("shard") or "")
    name = options.get("name") or (source.name if shard is None else f"{source.name}-{shard[0]}of{shard[1]}")
    live = options["source"] != "replay"
    return Collector(
        source,
        name=name,
        shard=shard,
        flush_bars=settings.COLLECTOR_FLUSH_BARS,
        flush_seconds=settings.COLLECTOR_FLUSH_SECONDS,
        partial_per_second=settings.PARTIAL_BAR_MAX_PER_SECOND,
        max_buffered=settings.COLLECTOR_MAX_BUFFERED_BARS,
        late_grace_ms=int(settings.COLLECTOR_LATE_GRACE_SECONDS * 1000),
        # A replay streams a fixed set of recordings: there are no instruments to follow.
        symbols_refresh_seconds=settings.COLLECTOR_SYMBOLS_REFRESH_SECONDS if live else 0.0,
        health_seconds=settings.COLLECTOR_HEALTH_SECONDS,
        reconcile_tolerance=settings.COLLECTOR_RECONCILE_TOLERANCE,
    )


class Command(BaseCommand):
    help = "Collect trades from a source, build 1m bars, store and publish them."

    def add_arguments(self, parser: CommandParser) -> None:
        add_collector_arguments(parser, flag="--source", required=True)

    def handle(self, *args: Any, **options: Any) -> None:
        collector = build_collector(options)
        prepare_process()
        stats = asyncio.run(self._run_until_signalled(collector))
        self.stdout.write(f"collector stopped: {stats}")

    async def _run_until_signalled(self, collector: Collector) -> CollectorStats:
        task = asyncio.create_task(collector.run())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            # Cancelling the run lets it store its open bars and pending writes before it returns.
            loop.add_signal_handler(sig, task.cancel)
        try:
            return await task
        except asyncio.CancelledError:
            return collector.stats

"""Run one source's collector until stopped (Ctrl-C or SIGTERM flush pending bars first)."""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from market.collector import Collector
from market.sources import SOURCE_NAMES, build_source


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


def build_collector(options: dict[str, Any]) -> Collector:
    try:
        source = build_source(options["source"], speed=options["speed"], loop=options["loop"])
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    return Collector(
        source,
        flush_bars=settings.COLLECTOR_FLUSH_BARS,
        flush_seconds=settings.COLLECTOR_FLUSH_SECONDS,
        partial_per_second=settings.PARTIAL_BAR_MAX_PER_SECOND,
    )


class Command(BaseCommand):
    help = "Collect trades from a source, build 1m bars, store and publish them."

    def add_arguments(self, parser: CommandParser) -> None:
        add_collector_arguments(parser, flag="--source", required=True)

    def handle(self, *args: Any, **options: Any) -> None:
        collector = build_collector(options)
        stats = asyncio.run(self._run_until_signalled(collector))
        self.stdout.write(f"collector stopped: {stats}")

    async def _run_until_signalled(self, collector: Collector) -> Any:
        task = asyncio.create_task(collector.run())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        try:
            return await task
        except asyncio.CancelledError:
            return collector.stats

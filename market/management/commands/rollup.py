"""Roll up the queued 1m changes into 5m..1d now (what the beat task does every minute).

manage.py rollup            # what is queued
manage.py rollup --full     # rebuild every higher-timeframe bar from the stored 1m bars
"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand
from django.utils import timezone

from market.management.commands._moments import parse_moment
from market.rollup import queue_full_rollup, roll_up


class Command(BaseCommand):
    help = "Roll up 1m bars into 5m, 15m, 1h, 4h and 1d (incremental; --full rebuilds everything)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--full", action="store_true", help="Queue every stored 1m bar first")
        parser.add_argument(
            "--instrument",
            type=int,
            action="append",
            dest="instruments",
            metavar="ID",
            help="With --full: only this instrument (repeatable)",
        )
        parser.add_argument("--now", type=parse_moment, help="Close buckets as of this time (default: now)")
        parser.add_argument("--no-publish", action="store_true", help="Do not broadcast updated bars")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["full"]:
            queued = queue_full_rollup(options["instruments"])
            self.stdout.write(f"Queued {queued} span(s) of 1m bars.")
        result = roll_up(options["now"] or timezone.now(), publish=not options["no_publish"])
        self.stdout.write(str(result))

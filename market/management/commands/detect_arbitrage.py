"""Detect cross-exchange arbitrage on the latest stored 1m closes now (what the beat task does).

manage.py detect_arbitrage --once                 # one detection, then exit
manage.py detect_arbitrage                        # every ARBITRAGE_INTERVAL_SECONDS until Ctrl-C
manage.py detect_arbitrage --once --now 2021-10-12T00:30   # as of a past moment (stored history)
"""

from __future__ import annotations

import time
from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from market.arbitrage_services import DetectionRun, detect_arbitrage
from market.management.commands._moments import parse_moment


class Command(BaseCommand):
    help = "Detect cross-exchange arbitrage opportunities on the latest 1m closes and track them."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--once", action="store_true", help="Detect once and exit")
        parser.add_argument("--now", type=parse_moment, help="With --once: detect as of this time (default: now)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["now"] and not options["once"]:
            raise CommandError("--now needs --once: a repeated detection always runs as of the present")
        if options["once"]:
            self.report(detect_arbitrage(options["now"] or timezone.now()))
            return
        try:
            while True:
                self.report(detect_arbitrage(timezone.now()))
                time.sleep(settings.ARBITRAGE_INTERVAL_SECONDS)
        except KeyboardInterrupt:
            self.stdout.write("Stopped.")

    def report(self, run: DetectionRun) -> None:
        self.stdout.write(str(run))
        for o in run.opportunities:
            self.stdout.write(
                f"  {o.symbol}: buy on {o.buy_venue} at {o.buy_price:.10g}, sell on {o.sell_venue} at "
                f"{o.sell_price:.10g}: gross {o.gross_bps:.2f} bps, net {o.net_bps:.2f} bps"
            )

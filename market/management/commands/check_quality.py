"""Score data quality (0..100 with findings) per instrument, timeframe and day; see docs/scheduled.md.

manage.py check_quality                      # yesterday and today, settings.QUALITY_TIMEFRAMES
manage.py check_quality --day 2024-01-15 --timeframe 1m --timeframe 5m
"""

from __future__ import annotations

from argparse import ArgumentParser
from datetime import date, timedelta
from typing import Any

from django.core.management.base import BaseCommand
from django.utils import timezone

from market.management.commands._moments import parse_moment
from market.quality_reports import check_quality
from market.timeframes import TIMEFRAMES


class Command(BaseCommand):
    help = "Score the data quality of every active instrument per day (default: yesterday and today)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--day", type=date.fromisoformat, action="append", dest="days", help="Repeatable")
        parser.add_argument("--timeframe", choices=list(TIMEFRAMES), action="append", dest="timeframes")
        parser.add_argument("--now", type=parse_moment, help="Score as of this time (default: now)")

    def handle(self, *args: Any, **options: Any) -> None:
        now = options["now"] or timezone.now()
        days = options["days"] or [now.date() - timedelta(days=1), now.date()]
        for day in days:
            self.stdout.write(f"{day}: {check_quality(day, now, options['timeframes'])}")

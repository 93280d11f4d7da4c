"""Delete bars older than their timeframe's retention (settings.BAR_RETENTION_DAYS); see docs/scheduled.md."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from market.management.commands._moments import parse_moment
from market.retention import enforce_retention


class Command(BaseCommand):
    help = "Delete bars older than their timeframe's retention horizon, in small batches."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--now", type=parse_moment, help="Horizons count back from this time (default: now)")
        parser.add_argument("--batch", type=int, default=None, help="Bars per delete (default: RETENTION_BATCH)")

    def handle(self, *args: Any, **options: Any) -> None:
        batch = options["batch"] or settings.RETENTION_BATCH
        try:
            result = enforce_retention(options["now"] or timezone.now(), settings.BAR_RETENTION_DAYS, batch=batch)
        except ValueError as exc:
            raise CommandError(f"BAR_RETENTION_DAYS: {exc}") from exc
        self.stdout.write(str(result))

"""Write the ML feature matrix of one series to a Parquet file."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from indicators.features import write_parquet
from indicators.history import feature_history
from market.models import Instrument
from market.timeframes import TIMEFRAMES


def _moment(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError("give a time zone, e.g. 2024-01-01T00:00:00+00:00")
    return moment


class Command(BaseCommand):
    help = "Export the ML features of an instrument's bars to Parquet (docs/ml_features.md)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("instrument", type=int, help="Instrument id")
        parser.add_argument("output", type=Path, help="Parquet file to write")
        parser.add_argument("--timeframe", default="1m", choices=list(TIMEFRAMES))
        parser.add_argument("--start", type=_moment, help="First bar time, ISO 8601 with time zone")
        parser.add_argument("--end", type=_moment, help="Bars before this time, ISO 8601 with time zone")
        parser.add_argument("--limit", type=int, default=settings.API_MAX_BARS * 100, help="At most this many rows")

    def handle(self, *args: Any, **options: Any) -> None:
        instrument = Instrument.objects.select_related("exchange").filter(pk=options["instrument"]).first()
        if instrument is None:
            raise CommandError(f"no instrument with id {options['instrument']}")
        timeframe = options["timeframe"]
        frame = feature_history(
            instrument, timeframe, start=options["start"], end=options["end"], limit=options["limit"]
        )
        labels = {"instrument": instrument.symbol, "exchange": instrument.exchange.code, "timeframe": timeframe}
        write_parquet(frame, options["output"], **labels)
        self.stdout.write(f"{len(frame)} rows x {len(frame.columns)} features -> {options['output']}")

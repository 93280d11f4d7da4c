"""Export one series' stored bars to a file. See docs/exports.md.

    manage.py export_bars --exchange binance --instrument BTC/USDT --timeframe 1m \\
        --start 2024-01-01 --end 2024-02-01 --format parquet --output btc.parquet

The same writers as the API (`exports.streams`); the file is written under a temporary name and
renamed when complete, so `--output` is never left half written.
"""

from __future__ import annotations

from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from exports.services import write_export_file
from exports.writers import EXTENSIONS, FORMATS
from market.management.commands._moments import parse_moment
from market.models import Instrument
from market.timeframes import TIMEFRAMES


class Command(BaseCommand):
    help = "Export stored bars of one instrument and timeframe to CSV, JSON Lines or Parquet (docs/exports.md)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--exchange", required=True, help="Exchange code, e.g. binance")
        parser.add_argument("--instrument", required=True, help="Instrument symbol, e.g. BTC/USDT")
        parser.add_argument("--timeframe", default="1m", choices=list(TIMEFRAMES))
        parser.add_argument("--start", type=parse_moment, help="First bar time (inclusive, UTC); default: the first")
        parser.add_argument("--end", type=parse_moment, help="Bars before this time (UTC); default: up to the last")
        parser.add_argument("--format", dest="file_format", choices=list(FORMATS), help="Default: from --output")
        parser.add_argument("--output", required=True, type=Path, help="File to write (replaced if it exists)")

    def handle(self, *args: Any, **options: Any) -> None:
        output: Path = Path(options["output"])
        fmt = options["file_format"] or format_of(output)
        start, end = options["start"], options["end"]
        if options["timeframe"] not in TIMEFRAMES:  # call_command() skips argparse's check of `choices`
            raise CommandError(f"unknown timeframe {options['timeframe']!r}")
        if start is not None and end is not None and start >= end:
            raise CommandError("--end must be after --start")
        instrument = Instrument.objects.filter(exchange__code=options["exchange"], symbol=options["instrument"]).first()
        if instrument is None:
            raise CommandError(f"no instrument {options['instrument']} on {options['exchange']}")
        if not output.parent.is_dir():
            raise CommandError(f"{output.parent} is not a directory")
        written = write_export_file(output, fmt, instrument.pk, options["timeframe"], start, end)
        self.stdout.write(f"{output}: {written.rows:,} bars, {written.bytes:,} bytes ({fmt})")


def format_of(path: Path) -> str:
    by_extension = {f".{extension}": fmt for fmt, extension in EXTENSIONS.items()} | {".json": "json"}
    fmt = by_extension.get(path.suffix.lower())
    if fmt is None:
        raise CommandError(f"cannot tell the format from {path.name!r}: pass --format {'/'.join(FORMATS)}")
    return fmt

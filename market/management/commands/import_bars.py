"""Import OHLCV bars from files into one instrument's series. See docs/import.md.

    manage.py import_bars FILE [FILE...] --exchange binance --symbol BTC/USDT --timeframe 1m

Reading and checking are pure (`market.importers`). This command finds the instrument, reads and
checks every file before it writes anything (so that, without --skip-bad-rows, one bad row anywhere
writes nothing at all), then stores each file's good rows in one transaction of its own.
"""

from __future__ import annotations

from argparse import ArgumentParser
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_slug
from django.db import DatabaseError, transaction
from django.utils import timezone
from tqdm import tqdm

from market.importers import FORMATS, BarFileError, Rejection, Validation, read_bar_file, validate_bars
from market.models import Exchange, Instrument
from market.services import ensure_instrument, store_bar_frame
from market.timeframes import TIMEFRAMES, parse_timeframe


@dataclass
class FileReport:
    read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0

    def add(self, other: FileReport) -> None:
        for field in fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))

    def __str__(self) -> str:
        return ", ".join(f"{field.name} {getattr(self, field.name):,}" for field in fields(self))


@dataclass
class CheckedFile:
    path: Path
    good: int
    rejected: int
    # Kept for the last file only: files can hold millions of rows, and reading a file again
    # costs less than holding many of them in memory at once.
    validation: Validation | None


class Command(BaseCommand):
    help = "Import OHLCV bars from CSV, Parquet, Feather or freqtrade JSON files (see docs/import.md)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("files", nargs="+", type=Path, metavar="FILE")
        parser.add_argument("--exchange", required=True, help="Exchange code, e.g. binance")
        parser.add_argument("--symbol", required=True, help="Instrument symbol, e.g. BTC/USDT")
        parser.add_argument("--timeframe", required=True, choices=list(TIMEFRAMES))
        parser.add_argument(
            "--format", dest="file_format", default="auto", choices=["auto", *FORMATS], help="Default: by extension"
        )
        parser.add_argument("--create-instrument", action="store_true", help="Create the exchange/instrument if new")
        parser.add_argument("--skip-bad-rows", action="store_true", help="Import the good rows, report the bad")
        parser.add_argument("--dry-run", action="store_true", help="Read, check and report; write nothing")
        parser.add_argument("--batch-size", type=int, default=50_000, help="Bars per database write")
        parser.add_argument("--show-rejected", type=int, default=50, metavar="N", help="List N bad rows a file; 0: all")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar")

    def handle(self, *args: Any, **options: Any) -> None:
        files = [Path(file) for file in options["files"]]
        exchange_code, symbol, timeframe = options["exchange"], options["symbol"], options["timeframe"]
        try:
            parse_timeframe(timeframe)  # call_command() skips argparse's check of `choices`
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        instrument = find_instrument(exchange_code, symbol, may_create=options["create_instrument"])

        now = timezone.now()
        checked = self.check_files(files, options["file_format"], timeframe, now, options["show_rejected"])
        if not options["skip_bad_rows"]:
            refuse_bad_rows(checked, dry_run=options["dry_run"])
        if options["dry_run"]:
            if instrument is None:
                self.stdout.write(f"Would create instrument {symbol} on {exchange_code}.")
            good, rejected = sum(item.good for item in checked), sum(item.rejected for item in checked)
            self.stdout.write(f"Dry run: {good:,} bar(s) would be imported, {rejected:,} rejected; nothing written.")
            return

        if instrument is None:
            instrument = ensure_instrument(exchange_code, symbol)
            self.stdout.write(f"Created instrument {symbol} on {exchange_code}.")
        total = FileReport()
        for item in checked:
            validation = item.validation or self.reread(item, options["file_format"], timeframe, now)
            report = self.import_file(item.path, validation, instrument.pk, timeframe, options)
            self.stdout.write(f"{item.path}: {report}")
            total.add(report)
        if len(checked) > 1:
            self.stdout.write(f"Total: {total}")

    def check_files(
        self, files: list[Path], file_format: str, timeframe: str, now: datetime, show_rejected: int
    ) -> list[CheckedFile]:
        """Read and check every file, printing what was found; fail if any cannot be read."""
        checked: list[CheckedFile] = []
        unreadable: list[str] = []
        for path in files:
            try:
                table = read_bar_file(path, file_format)
            except BarFileError as exc:
                unreadable.append(str(exc))
                continue
            validation = validate_bars(table, timeframe, now)
            self.stdout.write(
                f"{path}: {len(table.frame):,} rows, times read as {table.time_format}: "
                f"{len(validation.good):,} good, {len(validation.rejections):,} rejected"
            )
            if table.ignored_columns:
                self.stdout.write(f"{path}: ignored columns {', '.join(table.ignored_columns)}")
            self.show_rejections(validation.rejections, show_rejected)
            if checked:
                checked[-1].validation = None
            checked.append(CheckedFile(path, len(validation.good), len(validation.rejections), validation))
        if unreadable:
            raise CommandError("\n".join([*unreadable, "Nothing was written."]))
        return checked

    def reread(self, item: CheckedFile, file_format: str, timeframe: str, now: datetime) -> Validation:
        try:
            validation = validate_bars(read_bar_file(item.path, file_format), timeframe, now)
        except BarFileError as exc:
            raise CommandError(str(exc)) from exc
        if (len(validation.good), len(validation.rejections)) != (item.good, item.rejected):
            raise CommandError(f"{item.path}: the file changed during the import; nothing from it was written")
        return validation

    def show_rejections(self, rejections: list[Rejection], limit: int) -> None:
        shown = rejections if limit <= 0 else rejections[:limit]
        for rejection in shown:
            self.stdout.write(f"  {rejection}")
        if len(rejections) > len(shown):
            rest = len(rejections) - len(shown)
            self.stdout.write(f"  ... and {rest:,} more rejected row(s); --show-rejected 0 lists them all")

    def import_file(
        self, path: Path, validation: Validation, instrument_id: int, timeframe: str, options: dict[str, Any]
    ) -> FileReport:
        good = validation.good
        report = FileReport(read=len(good) + len(validation.rejections), rejected=len(validation.rejections))
        # The bar goes to the real stderr stream: Django's wrapper would end every redraw with a newline.
        progress = tqdm(
            total=len(good),
            desc=path.name,
            unit="bar",
            file=self.stderr._out,
            disable=options["no_progress"] or not self.stderr.isatty(),
        )
        try:
            with progress, transaction.atomic():
                for start in range(0, len(good), options["batch_size"]):
                    batch = good.iloc[start : start + options["batch_size"]]
                    result = store_bar_frame(batch, instrument_id=instrument_id, timeframe=timeframe)
                    report.inserted += result.inserted
                    report.updated += result.updated
                    report.unchanged += result.unchanged
                    progress.update(len(batch))
        # The bar store refuses invalid bars with a ValueError (barstore.InvalidBars) before writing;
        # the checks above make that unlikely, but the message should still name the file.
        except (DatabaseError, ValueError) as exc:
            raise CommandError(
                f"{path}: the database refused the bars, nothing from this file was written: {exc}"
            ) from exc
        return report


def refuse_bad_rows(checked: list[CheckedFile], *, dry_run: bool) -> None:
    rejected = sum(item.rejected for item in checked)
    if not rejected:
        return
    good = sum(item.good for item in checked)
    where = ", ".join(f"{item.path} ({item.rejected:,})" for item in checked if item.rejected)
    raise CommandError(
        f"{rejected:,} bad row(s) in {where}; nothing was written{' (dry run)' if dry_run else ''}. "
        f"Fix them, or pass --skip-bad-rows to import the {good:,} good row(s) and skip the bad ones."
    )


def find_instrument(exchange_code: str, symbol: str, *, may_create: bool) -> Instrument | None:
    """The instrument to import into; None if it does not exist yet and may be created."""
    instrument = Instrument.objects.filter(exchange__code=exchange_code, symbol=symbol).first()
    if instrument is not None:
        return instrument
    if may_create:
        try:
            validate_slug(exchange_code)
        except ValidationError as exc:
            raise CommandError(f"exchange code {exchange_code!r}: {' '.join(exc.messages)}") from exc
        return None
    if not Exchange.objects.filter(code=exchange_code).exists():
        known = ", ".join(Exchange.objects.values_list("code", flat=True)) or "none yet"
        raise CommandError(f"unknown exchange {exchange_code!r} (known: {known}); --create-instrument creates it")
    raise CommandError(f"no instrument {symbol!r} on {exchange_code}; --create-instrument creates it")

"""Fetch history from a source into the bar table, resumably. See docs/scheduled.md.

    manage.py backfill --source binance --symbol BTC/USDT --timeframe 1m --since 2024-01-01 [--until ...]

Interrupted (Ctrl-C, a crash, a network outage), the same command resumes after the last stored page;
run after it finished, it does nothing (or, without --until, fetches only what is new). --async
hands the job to a Celery worker instead of running it here.
"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from tqdm import tqdm

from market.backfill import EXCHANGE_SOURCES, BackfillError, client_for, plan_backfill, run_backfill
from market.history import HISTORY_SOURCES, HistoryError
from market.management.commands._moments import parse_moment
from market.models import BackfillJob, BackfillStatus, Exchange, Instrument
from market.timeframes import TIMEFRAMES, parse_timeframe


class Command(BaseCommand):
    help = "Backfill bars of one instrument from a history source (binance, alpaca, yahoo); resumable."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--source", required=True, choices=HISTORY_SOURCES)
        parser.add_argument("--symbol", required=True, help="As the source knows it: BTC/USDT, AAPL, BTC-USD")
        parser.add_argument("--timeframe", required=True, choices=list(TIMEFRAMES))
        parser.add_argument("--since", required=True, type=parse_moment, help="First bar wanted, e.g. 2024-01-01")
        parser.add_argument("--until", type=parse_moment, help="Bars before this time (default: now)")
        parser.add_argument("--exchange", help="Exchange code of the instrument (default: the source's)")
        parser.add_argument("--create-instrument", action="store_true", help="Create the exchange/instrument if new")
        parser.add_argument("--restart", action="store_true", help="Fetch the whole span again")
        parser.add_argument("--async", dest="run_async", action="store_true", help="Run it in a Celery worker")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar")

    def handle(self, *args: Any, **options: Any) -> None:
        source = options["source"]
        instrument = self.instrument(options["exchange"] or source, options["symbol"], options["create_instrument"])
        try:
            client = client_for(source)
            job = plan_backfill(
                source,
                instrument,
                options["timeframe"],
                options["since"],
                options["until"],
                timezone.now(),
                client=client,
                restart=options["restart"],
            )
        except BackfillError as exc:
            raise CommandError(str(exc)) from exc
        if job.status == BackfillStatus.DONE:
            self.stdout.write(f"Already done: {job} ({job.bars} bars). --restart fetches it again.")
            return
        if options["run_async"]:
            from market.tasks import backfill_task

            backfill_task.delay(job.pk)
            self.stdout.write(f"Queued backfill job {job.pk}: {job}")
            return
        resuming = job.cursor > job.start
        self.stdout.write(f"{'Resuming' if resuming else 'Starting'} {job} from {job.cursor:%Y-%m-%d %H:%M} UTC")
        with self.progress_bar(job, options["no_progress"]) as bar:
            try:
                job = run_backfill(job.pk, client=client, progress=lambda moved, stored: self.advance(bar, moved))
            except (HistoryError, BackfillError) as exc:
                raise CommandError(
                    f"{exc} (job {job.pk} keeps its checkpoint: run the same command to resume)"
                ) from exc
        self.stdout.write(f"Done: {job.bars} bars in {job.pages} pages.")

    def instrument(self, exchange_code: str, symbol: str, may_create: bool) -> Instrument:
        instrument = Instrument.objects.select_related("exchange").filter(exchange__code=exchange_code, symbol=symbol)
        found = instrument.first()
        if found is not None:
            return found
        if not may_create:
            raise CommandError(f"no instrument {symbol!r} on {exchange_code}; --create-instrument creates it")
        default_name = {code: code.title() for code in EXCHANGE_SOURCES}.get(exchange_code, exchange_code)
        exchange, _ = Exchange.objects.get_or_create(code=exchange_code, defaults={"name": default_name})
        created, _ = Instrument.objects.get_or_create(exchange=exchange, symbol=symbol)
        self.stdout.write(f"Created instrument {symbol} on {exchange_code}.")
        return Instrument.objects.select_related("exchange").get(pk=created.pk)

    def progress_bar(self, job: BackfillJob, disabled: bool) -> tqdm[Any]:
        # Progress in bar periods of the span (an upper bound: markets close, sources skip empty
        # periods), so the ETA is honest; on the real stderr, as Django's wrapper adds newlines.
        step = parse_timeframe(job.timeframe)
        total = int((job.end - job.start) / step)
        bar: tqdm[Any] = tqdm(
            total=total,
            initial=int((job.cursor - job.start) / step),
            unit="bar",
            unit_scale=True,
            desc=f"{job.instrument.symbol} {job.timeframe}",
            file=self.stderr._out,
            disable=disabled or not self.stderr.isatty(),
        )
        bar.cursor = job.cursor
        return bar

    def advance(self, bar: tqdm[Any], job: BackfillJob) -> None:
        step = parse_timeframe(job.timeframe)
        bar.update(int((job.cursor - bar.cursor) / step))
        bar.cursor = job.cursor
        bar.set_postfix(stored=job.bars, refresh=False)

"""Backtest a strategy on stored bars and print its metrics (docs/backtest.md)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from backtest import services
from backtest.engine import BacktestError, Costs, check_costs
from backtest.models import Backtest, Status
from backtest.report import metrics_table
from backtest.strategies import STRATEGIES, get_strategy
from indicators.catalogue import ParamError
from market.management.commands._moments import parse_moment
from market.models import Instrument
from market.timeframes import TIMEFRAMES


def _param(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise ValueError(f"{text!r}: give a parameter as name=value")
    return name.strip(), value.strip()


class Command(BaseCommand):
    help = "Backtest a strategy on an instrument's stored bars and print the metrics (stored for --user only)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--exchange", required=True, help="Exchange code, e.g. binance")
        parser.add_argument("--instrument", required=True, help="Symbol, e.g. BTC/USDT")
        parser.add_argument("--timeframe", default="1h", choices=list(TIMEFRAMES))
        parser.add_argument("--strategy", required=True, choices=list(STRATEGIES))
        parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="A strategy parameter")
        parser.add_argument("--start", type=parse_moment, help="From this bar time (UTC unless a zone is given)")
        parser.add_argument("--end", type=parse_moment, help="Bars opening before this time")
        parser.add_argument("--cash", type=float, default=10_000.0, help="Initial cash (default 10000)")
        parser.add_argument("--fee-bps", type=float, default=10.0, help="Fee per side in basis points (default 10)")
        parser.add_argument("--slippage-bps", type=float, default=0.0, help="Slippage per fill in basis points")
        parser.add_argument("--user", help="Store the backtest as this user's (shown in the API and admin)")

    def handle(self, *args: Any, **options: Any) -> None:
        instrument = (
            Instrument.objects.select_related("exchange")
            .filter(exchange__code=options["exchange"], symbol=options["instrument"])
            .first()
        )
        if instrument is None:
            raise CommandError(f"no instrument {options['instrument']} on {options['exchange']}")
        costs = Costs(options["cash"], options["fee_bps"], options["slippage_bps"])
        try:
            parameters = dict(_param(text) for text in options["param"])
            get_strategy(options["strategy"]).resolve(parameters)
            check_costs(costs)
        except (ValueError, ParamError, BacktestError) as error:
            raise CommandError(str(error)) from None
        if options["start"] and options["end"] and options["start"] >= options["end"]:
            raise CommandError("--end must be after --start")
        spec = services.RunSpec(
            instrument=instrument,
            timeframe=options["timeframe"],
            start=options["start"],
            end=options["end"],
            strategy=options["strategy"],
            parameters=parameters,
            costs=costs,
        )
        metrics = self._stored(spec, options["user"]) if options["user"] else self._simulated(spec)
        self.stdout.write(metrics_table(metrics))

    def _simulated(self, spec: services.RunSpec) -> dict[str, Any]:
        try:
            result, _ = services.simulate(spec)
        except (services.BacktestFailed, ParamError) as error:
            raise CommandError(str(error)) from None
        return result.metrics

    def _stored(self, spec: services.RunSpec, username: str) -> dict[str, Any]:
        owner = get_user_model().objects.filter(username=username).first()
        if owner is None:
            raise CommandError(f"no user {username!r}")
        backtest = services.create_backtest(owner.pk, spec, queue=False)
        services.run_backtest(backtest.pk)
        backtest = Backtest.objects.get(pk=backtest.pk)
        if backtest.status != Status.DONE:
            raise CommandError(f"backtest #{backtest.pk} failed: {backtest.error}")
        self.stdout.write(f"backtest #{backtest.pk} stored for {username}")
        return backtest.metrics or {}

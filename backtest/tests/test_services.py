"""Running stored backtests: the service and the task on real stored bars, idempotent; the command."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from backtest import services
from backtest.engine import Calendar, Costs, periods_per_year, run_backtest
from backtest.models import Backtest, BacktestResult, Status
from backtest.strategies import STRATEGIES
from backtest.tasks import run_backtest_task
from backtest.tests.conftest import btc_bars, store_btc_bars

pytestmark = pytest.mark.django_db


def spec(instrument: Any, **changes: Any) -> services.RunSpec:
    values = {
        "instrument": instrument,
        "timeframe": "1m",
        "start": None,
        "end": None,
        "strategy": "rsi_reversion",
        "parameters": {"period": 14},
        "costs": Costs(10_000.0, 10.0, 5.0),
        **changes,
    }
    return services.RunSpec(**values)


def test_a_stored_backtest_gets_the_engines_numbers_on_the_same_bars(btc, analyst):
    backtest = services.create_backtest(analyst.pk, spec(btc), queue=False)

    assert run_backtest_task(backtest.pk) == "done"

    backtest.refresh_from_db()
    bars = btc_bars(2000)
    strategy = STRATEGIES["rsi_reversion"]
    expected = run_backtest(
        bars, *strategy.signals(bars, strategy.resolve({})), Costs(10_000.0, 10.0, 5.0), Calendar(60)
    )
    assert backtest.metrics == expected.metrics
    assert backtest.parameters == {"period": 14, "lower": 30.0, "upper": 70.0}
    assert backtest.bars_used == 2000
    assert backtest.first_bar_time is not None
    assert backtest.last_bar_time is not None
    assert backtest.first_bar_time.timestamp() == bars.time[0]
    assert backtest.last_bar_time.timestamp() == bars.time[-1]
    assert backtest.started_at is not None
    assert backtest.finished_at is not None
    assert backtest.started_at <= backtest.finished_at
    stored = BacktestResult.objects.get(pk=backtest.pk)
    assert stored.trades == expected.trades.as_records()
    assert stored.equity_curve()[1].tolist() == expected.equity.tolist()


def test_running_a_backtest_twice_changes_nothing_the_second_time(btc, analyst):
    backtest = services.create_backtest(analyst.pk, spec(btc), queue=False)
    assert services.run_backtest(backtest.pk) == Status.DONE
    finished = Backtest.objects.get(pk=backtest.pk).finished_at

    assert run_backtest_task(backtest.pk) is None

    assert Backtest.objects.get(pk=backtest.pk).finished_at == finished
    assert BacktestResult.objects.count() == 1


def test_a_range_is_start_inclusive_end_exclusive_and_only_final_bars_count(btc, analyst):
    bars = btc_bars(2000)
    start, end = services._utc(int(bars.time[100])), services._utc(int(bars.time[1100]))
    backtest = services.create_backtest(analyst.pk, spec(btc, start=start, end=end), queue=False)
    from market.models import Bar

    Bar.objects.filter(instrument=btc, time=services._utc(int(bars.time[1099]))).update(final=False)

    services.run_backtest(backtest.pk)

    backtest.refresh_from_db()
    assert backtest.bars_used == 999
    assert backtest.first_bar_time == start
    assert backtest.last_bar_time == services._utc(int(bars.time[1098]))


def test_too_few_bars_fail_with_the_number_needed(btc, analyst):
    bars = btc_bars(2000)
    start = services._utc(int(bars.time[1990]))
    backtest = services.create_backtest(
        analyst.pk, spec(btc, start=start, strategy="sma_cross", parameters={}), queue=False
    )

    assert services.run_backtest(backtest.pk) == Status.FAILED

    backtest.refresh_from_db()
    assert backtest.error == (
        "only 10 bars of UNITTEST/BTC 1m in the range; sma_cross with these parameters needs at least 31"
    )
    assert backtest.metrics is None


def test_a_range_longer_than_the_limit_fails_asking_to_narrow_it(btc, analyst, settings):
    settings.BACKTEST_MAX_BARS = 1000
    backtest = services.create_backtest(analyst.pk, spec(btc), queue=False)

    assert services.run_backtest(backtest.pk) == Status.FAILED
    assert "more than 1000 bars" in Backtest.objects.get(pk=backtest.pk).error


def test_stocks_annualize_over_trading_sessions_and_crypto_around_the_clock(btc):
    from market.models import Instrument

    stock = Instrument.objects.create(exchange=btc.exchange, symbol="AAPL", asset_class="stock")
    store_btc_bars(stock, 500, timeframe="1h")
    store_btc_bars(btc, 500, timeframe="1h")

    crypto, _ = services.simulate(spec(btc, timeframe="1h"))
    session, _ = services.simulate(spec(stock, timeframe="1h"))

    assert crypto.metrics["periods_per_year"] == periods_per_year(3600) == 8766
    assert session.metrics["periods_per_year"] == 252 * 6.5


def test_the_command_prints_the_metrics_table_without_storing(btc):
    out = StringIO()

    call_command(
        "backtest",
        "--exchange=binance",
        "--instrument=UNITTEST/BTC",
        "--timeframe=1m",
        "--strategy=sma_cross",
        "--param",
        "fast=10",
        "--param",
        "slow=30",
        "--slippage-bps=5",
        stdout=out,
    )

    bars = btc_bars(2000)
    strategy = STRATEGIES["sma_cross"]
    expected = run_backtest(
        bars, *strategy.signals(bars, strategy.resolve({})), Costs(10_000.0, 10.0, 5.0), Calendar(60)
    )
    lines = out.getvalue().splitlines()
    assert f"Total return                  {expected.metrics['total_return']:.2%}" in lines
    assert f"Trades                        {expected.metrics['trades']:,}" in lines
    assert "Profit factor" in out.getvalue()
    assert not Backtest.objects.exists()


def test_the_command_stores_the_backtest_for_a_user(btc, analyst):
    out = StringIO()

    call_command(
        "backtest",
        "--exchange=binance",
        "--instrument=UNITTEST/BTC",
        "--timeframe=1m",
        "--strategy=buy_and_hold",
        f"--user={analyst.username}",
        stdout=out,
    )

    backtest = Backtest.objects.get()
    assert backtest.owner == analyst
    assert backtest.status == Status.DONE
    assert f"backtest #{backtest.pk} stored for {analyst.username}" in out.getvalue()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--instrument=DOGE/USDT", "--strategy=sma_cross"], "no instrument DOGE/USDT on binance"),
        (["--strategy=sma_cross", "--param", "fast=50"], "fast: must be less than slow"),
        (["--strategy=sma_cross", "--param", "fast"], "give a parameter as name=value"),
        (["--strategy=sma_cross", "--fee-bps=-3"], "fee_bps and slippage_bps must be at least 0"),
        (["--strategy=sma_cross", "--start=2030-01-01"], "no bars of UNITTEST/BTC 1m in the range"),
    ],
)
def test_the_command_refuses_bad_input_with_a_reason(btc, arguments, message):
    arguments = ["--exchange=binance", "--timeframe=1m", *arguments]
    if not any(a.startswith("--instrument") for a in arguments):
        arguments.append("--instrument=UNITTEST/BTC")

    with pytest.raises(CommandError, match=message):
        call_command("backtest", *arguments, stdout=StringIO())


def test_a_backtest_whose_worker_died_is_failed_after_the_stale_time(btc, analyst):
    from datetime import timedelta

    from django.utils import timezone

    from backtest.tasks import fail_stale_backtests_task

    now = timezone.now()
    lost, busy, finished = (services.create_backtest(analyst.pk, spec(btc), queue=False) for _ in range(3))
    Backtest.objects.filter(pk=lost.pk).update(status=Status.RUNNING, started_at=now - timedelta(minutes=61))
    Backtest.objects.filter(pk=busy.pk).update(status=Status.RUNNING, started_at=now - timedelta(minutes=5))
    Backtest.objects.filter(pk=finished.pk).update(status=Status.DONE, started_at=now - timedelta(hours=3))

    assert fail_stale_backtests_task() == 1
    assert fail_stale_backtests_task() == 0  # the second run changes nothing

    states = dict(Backtest.objects.values_list("pk", "status"))
    assert (states[lost.pk], states[busy.pk], states[finished.pk]) == (Status.FAILED, Status.RUNNING, Status.DONE)
    assert Backtest.objects.get(pk=lost.pk).error == services.STALE_ERROR

"""Retention deletes exactly the bars older than their timeframe's horizon, and nothing else."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db import connection

from market.barstore import BarRow
from market.models import Bar, Instrument, PendingRollup
from market.retention import enforce_retention, retention_cutoffs, timescale_hypertable
from market.rollup import roll_up
from market.services import store_bars

NOW = datetime(2024, 6, 1, 12, 0, 30, tzinfo=UTC)


def bars(instrument_id: int, timeframe: str, start: datetime, count: int, step: timedelta) -> list[BarRow]:
    return [
        BarRow(instrument_id, timeframe, start + i * step, 10.0, 11.0, 9.0, 10.5, 1.0, None, None, True)
        for i in range(count)
    ]


def test_cutoffs_are_now_minus_the_days_kept_per_listed_timeframe():
    assert retention_cutoffs({"1m": 90}, NOW) == {"1m": NOW - timedelta(days=90)}
    assert retention_cutoffs({}, NOW) == {}


@pytest.mark.parametrize(("policy", "message"), [({"2m": 5}, "unknown timeframe"), ({"1m": 0}, "at least one day")])
def test_a_bad_policy_is_refused(policy, message):
    with pytest.raises(ValueError, match=message):
        retention_cutoffs(policy, NOW)


@pytest.mark.django_db
def test_it_deletes_exactly_the_1m_bars_older_than_the_horizon_in_batches(instrument, exchange):
    other = Instrument.objects.create(exchange=exchange, symbol="BTC/USDT")
    horizon = NOW - timedelta(days=90)
    # 30 minutes either side of the horizon, for two instruments, plus old hourly bars.
    for instrument_id in (instrument.pk, other.pk):
        store_bars(bars(instrument_id, "1m", horizon - timedelta(minutes=30), 60, timedelta(minutes=1)), publish=False)
        store_bars(bars(instrument_id, "1h", horizon - timedelta(days=10), 24, timedelta(hours=1)), publish=False)
    roll_up(NOW, publish=False)
    higher_before = Bar.objects.exclude(timeframe="1m").count()

    result = enforce_retention(NOW, {"1m": 90}, batch=7)

    assert result.deleted["1m"] == 2 * 30
    for instrument_id in (instrument.pk, other.pk):
        kept = Bar.objects.filter(instrument_id=instrument_id, timeframe="1m").order_by("time")
        first = kept.first()
        assert kept.count() == 30
        assert first is not None
        assert first.time == horizon  # a bar exactly at the horizon is not older: kept
    assert Bar.objects.exclude(timeframe="1m").count() == higher_before


@pytest.mark.django_db
def test_running_it_twice_deletes_nothing_the_second_time(instrument):
    store_bars(bars(instrument.pk, "1m", NOW - timedelta(days=100), 10, timedelta(minutes=1)), publish=False)
    roll_up(NOW, publish=False)

    first = enforce_retention(NOW, {"1m": 90})
    second = enforce_retention(NOW, {"1m": 90})

    assert first.deleted["1m"] == 10
    assert sum(second.deleted.values()) == 0


@pytest.mark.django_db
def test_old_minutes_waiting_for_the_rollup_are_kept_until_rolled_up(instrument):
    store_bars(bars(instrument.pk, "1m", NOW - timedelta(days=100), 10, timedelta(minutes=1)), publish=False)
    assert PendingRollup.objects.exists()

    waiting = enforce_retention(NOW, {"1m": 90})
    roll_up(NOW, publish=False)
    after = enforce_retention(NOW, {"1m": 90})

    assert waiting.skipped == [instrument.pk]
    assert sum(waiting.deleted.values()) == 0
    assert after.deleted["1m"] == 10
    assert Bar.objects.filter(instrument=instrument, timeframe="5m").count() == 2


@pytest.mark.django_db
def test_the_command_uses_the_settings_policy(instrument, settings):
    settings.BAR_RETENTION_DAYS = {"1m": 30, "5m": 60}
    store_bars(bars(instrument.pk, "1m", NOW - timedelta(days=45), 10, timedelta(minutes=1)), publish=False)
    roll_up(NOW, publish=False)

    call_command("enforce_retention", "--now", NOW.isoformat())

    assert not Bar.objects.filter(timeframe="1m").exists()
    assert Bar.objects.filter(timeframe="5m").count() == 2


@pytest.mark.django_db
def test_without_timescaledb_no_compression_policy_is_attempted():
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
            if cursor.fetchone() is not None:
                pytest.skip("this server has TimescaleDB")
    assert timescale_hypertable() is False

"""The watchlist overview (/watchlist/) and the admins' System page (/system/), rendered from real data."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from django.contrib.staticfiles import finders
from django.test import Client
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, PeriodicTask
from django_celery_results.models import TaskResult

from accounts.tests.clients import logged_in
from market.barstore import BarRow
from market.models import CollectorStatus, Instrument, QualityReport
from market.services import store_bars
from market.watchlist import add_to_watchlist

pytestmark = pytest.mark.django_db


@pytest.fixture
def xrp_bars(instrument, sample_data):
    """The real XRP/ETH 1m candles (2019-10-11 to 2019-10-13), stored."""
    frame = pd.read_feather(sample_data / "freqtrade" / "XRP_ETH-1m.feather")
    rows = [
        BarRow(instrument.pk, "1m", t.to_pydatetime(), o, h, low, c, v, None, None, True)
        for t, o, h, low, c, v in frame.itertuples(index=False)
    ]
    store_bars(rows, publish=False)
    return frame


@pytest.fixture
def btc(exchange):
    return Instrument.objects.create(exchange=exchange, symbol="BTC/USDT")


def report(instrument: Instrument, score: int, day: str = "2019-10-13") -> QualityReport:
    return QualityReport.objects.create(
        instrument=instrument,
        timeframe="1m",
        day=day,
        score=score,
        bars=10,
        expected_bars=12,
        updated_at=timezone.now(),
    )


def collector(
    name: str = "replay", source: str = "replay", state: str = "streaming", age_seconds: float = 1.0, **fields: Any
) -> CollectorStatus:
    moment = timezone.now() - timedelta(seconds=age_seconds)
    return CollectorStatus.objects.create(
        name=name, source=source, state=state, started_at=moment, updated_at=moment, **fields
    )


def row_of(page: str, instrument) -> str:
    row = page[page.index(f'data-instrument="{instrument.pk}"') :]
    return row[: row.index("</tr>")]


# --- Watchlist -------------------------------------------------------------------------------------


def test_the_watchlist_sends_anonymous_visitors_to_log_in(settings):
    settings.PUBLIC_MARKET_DATA = False

    response = Client().get("/watchlist/")

    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/watchlist/"


def test_with_public_market_data_anonymous_visitors_see_the_active_instruments_read_only(settings, instrument):
    settings.PUBLIC_MARKET_DATA = True

    page = Client().get("/watchlist/").content.decode()

    assert 'data-testid="watch-row"' in page
    assert "XRP/ETH" in page
    assert "data-watchlist-add" not in page
    assert "data-remove" not in page


def test_a_user_without_a_role_gets_the_403_page(settings, make_user):
    settings.PUBLIC_MARKET_DATA = False

    response = logged_in(make_user()).get("/watchlist/")

    assert response.status_code == 403


def test_an_empty_watchlist_shows_every_active_instrument_with_its_last_day(make_user, instrument, xrp_bars, btc):
    # Given real XRP/ETH minutes, a quality score and a streaming replay collector (which feeds binance)
    report(instrument, 97)
    report(instrument, 60, day="2019-10-12")
    collector()
    Instrument.objects.create(exchange=instrument.exchange, symbol="OLD/ETH", active=False)

    # When a viewer with an empty watchlist opens the page
    response = logged_in(make_user("viewer")).get("/watchlist/")

    # Then every active instrument is listed, flagged as the default
    page = response.content.decode()
    assert response.status_code == 200
    assert 'data-testid="watchlist-default"' in page
    assert "BTC/USDT" in page
    assert "OLD/ETH" not in page
    # And XRP/ETH shows its newest close, its change over the day, a drawn line, its newest score
    last = xrp_bars["close"].iloc[-1]
    closes = xrp_bars.set_index("date")["close"]
    reference = closes[: xrp_bars["date"].iloc[-1] - timedelta(days=1)].iloc[-1]
    change = (last - reference) / reference * 100
    row = row_of(page, instrument)
    assert f"{last:.8f}" in row
    assert f"{change:+.2f}%" in row
    assert 'class="score score-good"' in row
    assert ">97<" in row
    assert ">streaming<" in row
    assert 'd="M0.0 ' in row
    # And BTC/USDT, without bars, says so instead of failing
    assert 'data-testid="last-price">—<' in row_of(page, btc)


def test_the_users_own_instruments_are_shown_in_their_order(make_user, instrument, btc):
    user = make_user("viewer")
    add_to_watchlist(user.pk, btc.pk)
    add_to_watchlist(user.pk, instrument.pk)

    page = logged_in(user).get("/watchlist/").content.decode()

    assert 'data-testid="watchlist-default"' not in page
    assert page.index(f'data-instrument="{btc.pk}"') < page.index(f'data-instrument="{instrument.pk}"')
    assert f'aria-label="Remove {btc.symbol} from the watchlist"' in page
    # What is already on the list is not offered again
    assert f'<option value="{btc.pk}">' not in page


def test_a_stale_collector_shows_as_stale(make_user, instrument, settings):
    settings.COLLECTOR_STALE_SECONDS = 60
    collector(age_seconds=600)

    page = logged_in(make_user("viewer")).get("/watchlist/").content.decode()

    assert ">stale<" in page


# --- System ----------------------------------------------------------------------------------------


def test_the_system_page_is_for_admins_only(make_user):
    assert Client().get("/system/").status_code == 302
    assert logged_in(make_user("analyst")).get("/system/").status_code == 403
    assert logged_in(make_user("admin")).get("/system/").status_code == 200


def test_the_system_page_shows_collectors_quality_tasks_and_schedules(make_user, instrument, settings):
    settings.FLOWER_URL = "http://flower.internal:5555"
    collector(name="binance-1of2", source="binance", state="backoff", last_error="ConnectionResetError: peer")
    collector(name="yahoo", source="yahoo", age_seconds=3600)
    report(instrument, 42).findings.create(kind="gap", count=3, penalty=30, detail="3 bars missing from 10:00")
    TaskResult.objects.create(
        task_id="t-1",
        task_name="market.tasks.rollup_task",
        status="SUCCESS",
        date_done=datetime(2026, 1, 2, tzinfo=UTC),
    )
    TaskResult.objects.create(task_id="t-2", task_name="market.tasks.check_quality_task", status="FAILURE")
    # Beat's database copy of an entry, disabled in the admin, and an entry added there
    every_day = CrontabSchedule.objects.create(minute="17", hour="3")
    PeriodicTask.objects.create(
        name="retention", task="market.tasks.enforce_retention_task", crontab=every_day, enabled=False
    )
    PeriodicTask.objects.create(name="nightly-export", task="exports.tasks.export_task", crontab=every_day)

    response = logged_in(make_user("admin")).get("/system/")

    page = response.content.decode()
    assert response.status_code == 200
    assert "binance-1of2" in page
    assert "Waiting to reconnect" in page
    assert "ConnectionResetError: peer" in page
    assert ">stale<" in page  # yahoo has not reported for an hour
    assert "XRP/ETH" in page
    assert ">42<" in page
    assert "Missing bars while the market was open \u00d73" in page
    assert "market.tasks.rollup_task" in page
    assert "task-success" in page
    assert "task-failure" in page
    for name in settings.CELERY_BEAT_SCHEDULE:
        assert f">{name}<" in page
    assert "every 60 s" in page  # the roll-up
    assert "cron 17 3 * * *" in page  # retention
    assert ">disabled<" in page
    assert ">nightly-export<" in page
    assert 'href="http://flower.internal:5555"' in page
    assert 'href="/admin/"' in page


def test_the_system_page_counts_the_last_days_sign_ins_and_names_failing_addresses(make_user):
    from accounts.models import AuthEvent

    AuthEvent.objects.create(kind="login", via="web", username="ana", address="198.51.100.1")
    for name in ("root", "admin", "root"):
        AuthEvent.objects.create(kind="login_failed", via="api", username=name, address="203.0.113.66")
    AuthEvent.objects.create(kind="throttled", via="api", username="root", address="203.0.113.66")
    old = AuthEvent.objects.create(kind="login_failed", via="web", username="x", address="192.0.2.9")
    AuthEvent.objects.filter(pk=old.pk).update(time=timezone.now() - timedelta(days=2))

    page = logged_in(make_user("admin")).get("/system/").content.decode()

    counts = page[page.index('data-testid="sign-ins"') : page.index("</ul>", page.index('data-testid="sign-ins"'))]
    assert '<span class="num">3</span> failed' in counts
    assert '<span class="num">1</span> refused by the rate limit' in counts
    # the admin's own sign-in by force_login is a login too
    assert '<span class="num">2</span> signed in' in counts
    rows = page[page.index('data-testid="failing-addresses"') :]
    assert '203.0.113.66</a></th><td class="num">4</td><td class="num">2</td>' in rows
    assert "192.0.2.9" not in page  # two days ago


def test_the_navigation_shows_system_to_admins_and_alerts_to_analysts(make_user):
    viewer = logged_in(make_user("viewer")).get("/watchlist/").content.decode()
    analyst = logged_in(make_user("analyst")).get("/watchlist/").content.decode()
    admin = logged_in(make_user("admin")).get("/watchlist/").content.decode()

    assert 'href="/alerts/"' not in viewer
    assert 'href="/system/"' not in viewer
    assert 'href="/alerts/"' in analyst
    assert 'href="/system/"' not in analyst
    assert 'href="/alerts/"' in admin
    assert 'href="/system/"' in admin
    assert 'aria-current="page">Watchlist<' in admin


# --- Scripts ---------------------------------------------------------------------------------------

PAGES_JS = Path(__file__).resolve().parents[2] / "static" / "market" / "js" / "pages"
IMPORT = re.compile(r'^import [^;]*? from "([^"]+)";', re.MULTILINE)


def test_every_module_the_pages_import_is_in_their_import_map_and_served(make_user):
    content = logged_in(make_user("admin")).get("/system/").content.decode()
    block = content.split('<script type="importmap"', 1)[1].split(">", 1)[1].split("</script>", 1)[0]
    mapped = json.loads(block)["imports"]

    imported = {name for path in PAGES_JS.glob("*.js") for name in IMPORT.findall(path.read_text())}

    assert imported, "no imports found: the pattern no longer matches the modules"
    assert imported <= set(mapped), f"not in the import map: {sorted(imported - set(mapped))}"
    for url in mapped.values():
        assert finders.find(url.removeprefix("/static/")), f"{url} is not a static file"

"""The bars cache: repeated requests come from the cache, and every path that writes or deletes bars
drops the cached responses of its instruments once it commits (stale bars are a defect)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from market.admin_bar_queries import BarPrimaryKey
from market.bars_cache import invalidate_cached_bars
from market.barstore import BarRow
from market.models import Bar
from market.retention import enforce_retention
from market.rollup import roll_up
from market.services import store_bar_frame, store_bars
from market.tests.test_metrics import labels, scrape

pytestmark = pytest.mark.django_db

START = datetime(2024, 3, 1, tzinfo=UTC)


def bar(instrument, minute: int, close: float = 10.5) -> BarRow:
    return BarRow(instrument.pk, "1m", START + timedelta(minutes=minute), 10.0, 11.0, 9.0, close, 1.0, 3, None, True)


@pytest.fixture
def cached(settings, instrument, django_capture_on_commit_callbacks):
    settings.API_BARS_CACHE_SECONDS = 60
    invalidate_cached_bars([instrument.pk])  # the cache may hold bodies of an earlier run's instrument
    with django_capture_on_commit_callbacks(execute=True):
        store_bars([bar(instrument, 0), bar(instrument, 1)], publish=False)
    return instrument


@pytest.fixture
def committing(django_capture_on_commit_callbacks):
    """Runs the write inside as committed: its after-commit work (the invalidation) happens."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def superuser_client() -> Client:
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "a-long-password"))
    return client


def bars(client, instrument, **params) -> list[dict[str, Any]]:
    response = client.get("/api/v1/bars/", {"instrument": instrument.pk, **params})
    assert response.status_code == 200, response.content
    return response.json()["bars"]


def closes(client, instrument, **params) -> list[float]:
    return [row["close"] for row in bars(client, instrument, **params)]


def reads_bars(client, instrument, **params) -> bool:
    with CaptureQueriesContext(connection) as queries:
        bars(client, instrument, **params)
    return any("market_bar" in query["sql"] for query in queries)


def test_a_repeated_request_is_served_without_reading_bars(viewer_client, cached):
    first = viewer_client.get("/api/v1/bars/", {"instrument": cached.pk})
    with CaptureQueriesContext(connection) as queries:
        second = viewer_client.get("/api/v1/bars/", {"instrument": cached.pk})

    assert second.content == first.content
    assert not [query for query in queries if "market_bar" in query["sql"]]


def test_different_ranges_are_cached_apart(viewer_client, cached):
    newest = bars(viewer_client, cached, limit=1)
    both = bars(viewer_client, cached, limit=2)
    desc = bars(viewer_client, cached, order="desc")
    since = bars(viewer_client, cached, start="2024-03-01T00:01:00Z")

    assert len(newest) == 1
    assert len(both) == 2
    assert desc == list(reversed(both))
    assert since == both[1:]


def test_a_cached_body_still_needs_a_login_and_the_viewer_role(viewer_client, cached, make_user):
    bars(viewer_client, cached)
    no_role = Client()
    no_role.force_login(make_user())

    assert Client().get("/api/v1/bars/", {"instrument": cached.pk}).status_code == 401
    assert no_role.get("/api/v1/bars/", {"instrument": cached.pk}).status_code == 403


def test_a_bad_parameter_is_refused_even_beside_a_cached_body(viewer_client, cached):
    bars(viewer_client, cached)

    response = viewer_client.get("/api/v1/bars/", {"instrument": cached.pk, "limit": 0})

    assert response.status_code == 400
    assert "limit" in response.json()["error"]["fields"]


def test_storing_new_bars_drops_the_cached_responses(viewer_client, cached, committing):
    assert closes(viewer_client, cached) == [10.5, 10.5]
    with committing():
        store_bars([bar(cached, 1, close=10.75), bar(cached, 2)], publish=False)

    assert closes(viewer_client, cached) == [10.5, 10.75, 10.5]


def test_storing_the_same_bars_again_keeps_the_cached_responses(viewer_client, cached, committing):
    bars(viewer_client, cached)
    with committing():
        store_bars([bar(cached, 0), bar(cached, 1)], publish=False)

    assert not reads_bars(viewer_client, cached)


def test_an_import_drops_the_cached_responses(viewer_client, cached, committing):
    bars(viewer_client, cached)
    frame = pd.DataFrame(
        {"time": [START + timedelta(minutes=5)], "open": [1.0], "high": [2.0], "low": [0.5], "close": [1.5]}
    ).assign(volume=7.0)
    with committing():
        store_bar_frame(frame, instrument_id=cached.pk, timeframe="1m")

    assert closes(viewer_client, cached) == [10.5, 10.5, 1.5]


def test_the_roll_up_drops_the_cached_responses_of_higher_timeframes(viewer_client, cached, committing):
    with committing():
        roll_up(START + timedelta(days=1))
    assert closes(viewer_client, cached, timeframe="5m") == [10.5]
    with committing():
        store_bars([bar(cached, 2, close=10.75)], publish=False)
    assert closes(viewer_client, cached, timeframe="5m") == [10.5]  # the roll-up has not run yet

    with committing():
        roll_up(START + timedelta(days=1))

    assert closes(viewer_client, cached, timeframe="5m") == [10.75]


def test_retention_drops_the_cached_responses(viewer_client, cached, committing):
    with committing():
        roll_up(START + timedelta(days=1))  # retention waits for the roll-up of what it deletes
    bars(viewer_client, cached)
    with committing():
        enforce_retention(START + timedelta(days=30), {"1m": 1})

    assert bars(viewer_client, cached) == []


def test_editing_a_bar_in_the_admin_drops_the_cached_responses(viewer_client, superuser_client, cached, committing):
    bars(viewer_client, cached)
    stored = BarPrimaryKey(cached.pk, "1m", START)
    form = {"open": 10.0, "high": 11.0, "low": 9.0, "close": 9.5, "volume": 1.0, "trades": 3, "vwap": "", "final": "on"}
    with committing():
        response = superuser_client.post(reverse("admin:market_bar_change", args=stored.url_args), form)
    assert response.status_code == 302, response.content

    assert closes(viewer_client, cached) == [9.5, 10.5]


def test_deleting_bars_in_the_admin_drops_the_cached_responses(viewer_client, superuser_client, cached, committing):
    bars(viewer_client, cached)
    first, second = (BarPrimaryKey.of(stored) for stored in Bar.objects.filter(instrument=cached).order_by("time"))
    with committing():
        superuser_client.post(reverse("admin:market_bar_delete", args=first.url_args), {"post": "yes"})
    assert len(bars(viewer_client, cached)) == 1

    with committing():
        superuser_client.post(
            reverse("admin:market_bar_changelist"),
            {"action": "delete_selected", "_selected_action": [second.text], "post": "yes"},
        )

    assert bars(viewer_client, cached) == []


def test_deleting_an_instrument_in_the_admin_ends_its_cached_responses(
    viewer_client, superuser_client, cached, committing
):
    bars(viewer_client, cached)
    with committing():
        superuser_client.post(reverse("admin:market_instrument_delete", args=[cached.pk]), {"post": "yes"})

    assert viewer_client.get("/api/v1/bars/", {"instrument": cached.pk}).status_code == 400


def test_without_the_cache_new_bars_show_at_once(viewer_client, instrument, settings):
    settings.API_BARS_CACHE_SECONDS = 0
    store_bars([bar(instrument, 0)], publish=False)
    bars(viewer_client, instrument)
    store_bars([bar(instrument, 1)], publish=False)

    assert len(bars(viewer_client, instrument)) == 2


def test_a_failing_cache_falls_back_to_the_database(viewer_client, cached, monkeypatch):
    def broken(*args, **kwargs):
        raise ConnectionError("cache down")

    monkeypatch.setattr("market.bars_cache.cache.get_many", broken)

    assert len(bars(viewer_client, cached)) == 2


def lookups_on_metrics(result: str) -> float:
    """The counter as /metrics serves it (this process's count: one process in the suite)."""
    return scrape(Client()).get(("cryptostock_bars_cache_lookups_total", labels(result=result)), 0.0)


def test_hits_misses_and_failures_are_counted_on_metrics(viewer_client, cached, monkeypatch):
    before = {result: lookups_on_metrics(result) for result in ("hit", "miss", "error")}

    bars(viewer_client, cached, limit=2)
    bars(viewer_client, cached, limit=2)
    bars(viewer_client, cached, limit=2)
    monkeypatch.setattr("market.bars_cache.cache.get_many", lambda *a, **k: (_ for _ in ()).throw(ConnectionError()))
    bars(viewer_client, cached, limit=2)

    after = {result: lookups_on_metrics(result) for result in ("hit", "miss", "error")}
    assert {result: after[result] - before[result] for result in after} == {"hit": 2, "miss": 1, "error": 1}

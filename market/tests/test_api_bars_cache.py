"""The bars fast path's cache: repeated requests come from the cache until the instrument's bars change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from market.api.bars import invalidate_instrument_bars
from market.barstore import BarRow
from market.services import store_bars

pytestmark = pytest.mark.django_db

START = datetime(2024, 3, 1, tzinfo=UTC)


def bar(instrument, minute: int) -> BarRow:
    return BarRow(instrument.pk, "1m", START + timedelta(minutes=minute), 10.0, 11.0, 9.0, 10.5, 1.0, 3, None, True)


@pytest.fixture
def cached(settings, instrument):
    settings.API_BARS_CACHE_SECONDS = 60
    invalidate_instrument_bars(instrument.pk)  # the cache may hold bodies of an earlier run's instrument 1
    store_bars([bar(instrument, 0), bar(instrument, 1)], publish=False)
    return instrument


def bar_times(viewer_client, instrument) -> list[int]:
    return [row["time"] for row in viewer_client.get("/api/v1/bars/", {"instrument": instrument.pk}).json()["bars"]]


def test_a_repeated_request_is_served_without_reading_bars(viewer_client, cached):
    first = viewer_client.get("/api/v1/bars/", {"instrument": cached.pk})
    with CaptureQueriesContext(connection) as queries:
        second = viewer_client.get("/api/v1/bars/", {"instrument": cached.pk})

    assert second.content == first.content
    assert not [query for query in queries if "market_bar" in query["sql"]]


def test_new_bars_show_once_the_instrument_is_invalidated(viewer_client, cached):
    before = bar_times(viewer_client, cached)
    store_bars([bar(cached, 2)], publish=False)
    stale = bar_times(viewer_client, cached)
    invalidate_instrument_bars(cached.pk)

    assert stale == before
    assert len(bar_times(viewer_client, cached)) == 3


def test_different_ranges_are_cached_apart(viewer_client, cached):
    newest = viewer_client.get("/api/v1/bars/", {"instrument": cached.pk, "limit": 1}).json()["bars"]
    both = viewer_client.get("/api/v1/bars/", {"instrument": cached.pk, "limit": 2}).json()["bars"]
    desc = viewer_client.get("/api/v1/bars/", {"instrument": cached.pk, "order": "desc"}).json()["bars"]

    assert len(newest) == 1
    assert len(both) == 2
    assert desc == list(reversed(both))


def test_without_the_cache_new_bars_show_at_once(viewer_client, instrument, settings):
    settings.API_BARS_CACHE_SECONDS = 0
    store_bars([bar(instrument, 0)], publish=False)
    bar_times(viewer_client, instrument)
    store_bars([bar(instrument, 1)], publish=False)

    assert len(bar_times(viewer_client, instrument)) == 2


def test_a_failing_cache_falls_back_to_the_database(viewer_client, cached, monkeypatch):
    def broken(*args, **kwargs):
        raise ConnectionError("cache down")

    monkeypatch.setattr("market.api.bars.cache.get_many", broken)

    assert len(bar_times(viewer_client, cached)) == 2

"""The admin's bar list: one page of the newest bars, read per series from the primary key
(market.admin_bar_queries.newest_bars) against the plain ordered query (`newest_bars_plain`:
ORDER BY time DESC ... LIMIT, which PostgreSQL can only answer by reading every matching bar, since
the table's one index starts with the instrument).

Data: 1,000 instruments on one exchange, each with its last 1,000 1m bars, 200 5m bars and 20 1h
bars up to the same minute (1.22M bars, the live table of a deployment collecting 1,000 symbols);
the newest 1m bar of each is not final. Each line is the median of 5 reads of a 101-bar page
(the admin reads PAGE_SIZE + 1), in ms; baseline: the plain query on the same page, read right
after (ratio below 1: the per-series read is faster). Both are checked to return the same bars.
Then the whole list page through Django's test client as a superuser, against the COUNT(*) alone
that the ModelAdmin changelist of bars ran on every view before (`admin.bars.page_ms.vs_old_count`).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from bench import BenchUnavailable, measurement

INSTRUMENTS = 1_000
SERIES = {"1m": (1_000, "1 minute"), "5m": (200, "5 minutes"), "1h": (20, "1 hour")}
READS = 5
PAGE = 101


def run() -> Iterator[dict[str, Any]]:
    from django.db import connection

    if connection.vendor != "postgresql":
        raise BenchUnavailable("needs PostgreSQL: set DATABASE_URL=postgres://user@host:5432/anydb")
    instrument_ids = load_bars()
    yield from compare_reads(instrument_ids)
    from django.conf import settings
    from django.test import override_settings

    # Pages link static files by their names in collectstatic's manifest, which is not built here.
    plain_static = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}
    with override_settings(STORAGES={**settings.STORAGES, "staticfiles": plain_static}):
        page_ms = median_ms(list_page())
    yield measurement("admin.bars.page_ms.vs_old_count", page_ms, "ms", median_ms(count_bars))


def count_bars() -> object:
    """What the ModelAdmin changelist of bars ran on every view before these pages (its paginator's
    count; show_full_result_count=False only saved a second one): a COUNT(*) of the table."""
    from market.models import Bar

    return Bar.objects.count()


def load_bars() -> list[int]:
    from django.db import connection

    from market.models import Exchange, Instrument

    exchange = Exchange.objects.create(code="bench-admin", name="Bench")
    instruments = Instrument.objects.bulk_create(
        Instrument(exchange=exchange, symbol=f"A{number}/USDT") for number in range(INSTRUMENTS)
    )
    ids = [instrument.pk for instrument in instruments]
    with connection.cursor() as cursor:
        for timeframe, (count, step) in SERIES.items():
            cursor.execute(
                """INSERT INTO market_bar (instrument_id, timeframe, "time", open, high, low, close, volume, final)
                   SELECT i, %s, t, 10, 11, 9, 10.5, 1, t < '2030-01-01'::timestamptz - %s::interval
                   FROM unnest(%s::bigint[]) AS i,
                        generate_series('2030-01-01'::timestamptz - %s * %s::interval,
                                        '2030-01-01'::timestamptz - %s::interval, %s::interval) AS t""",
                [timeframe, step, ids, count, step, step, step],
            )
        cursor.execute("TRUNCATE market_pendingrollup")
        cursor.execute("ANALYZE market_bar")
    return ids


def compare_reads(instrument_ids: list[int]) -> Iterator[dict[str, Any]]:
    from market.admin_bar_queries import (
        BarFilters,
        BarPrimaryKey,
        matching_instruments,
        newest_bars,
        newest_bars_plain,
    )
    from market.timeframes import TIMEFRAMES

    tenth_page_after = BarPrimaryKey.of(newest_bars(BarFilters(), limit=9 * (PAGE - 1))[-1])
    one = instrument_ids[len(instrument_ids) // 2]
    cases = {
        "first_page": (BarFilters(), None, instrument_ids),
        "tenth_page": (BarFilters(), tenth_page_after, instrument_ids),
        "one_instrument": (BarFilters(instrument_id=one), None, [one]),
        "not_final": (BarFilters(final=False), None, instrument_ids),
        "symbol_search_1m": (BarFilters(symbol="A1", timeframe="1m"), None, None),
    }
    for name, (filters, after, ids) in cases.items():
        if ids is None:
            ids = list(matching_instruments(filters).values_list("pk", flat=True))
        timeframes = [filters.timeframe] if filters.timeframe else list(TIMEFRAMES)
        fast = newest_bars(filters, after=after, limit=PAGE)
        plain = newest_bars_plain(ids, timeframes, filters, after, PAGE)
        if [BarPrimaryKey.of(bar) for bar in fast] != [BarPrimaryKey.of(bar) for bar in plain]:
            raise AssertionError(f"{name}: the per-series read differs from the plain query")
        per_series = median_ms(partial(newest_bars, filters, after=after, limit=PAGE))
        baseline = median_ms(partial(newest_bars_plain, ids, timeframes, filters, after, PAGE))
        yield measurement(f"admin.bars.{name}.per_series_ms", per_series, "ms", baseline)


def list_page() -> Callable[[], object]:
    from django.contrib.auth import get_user_model
    from django.test import Client

    client = Client(HTTP_HOST="localhost")  # one of the default ALLOWED_HOSTS (no test runner here)
    client.force_login(get_user_model().objects.create_superuser("bench-root", "root@example.com", "x" * 20))

    def get() -> object:
        response = client.get("/admin/market/bar/")
        if response.status_code != 200:
            raise AssertionError(f"the bar list answered {response.status_code}")
        return response

    return get


def median_ms(action: Callable[[], object]) -> float:
    timings = []
    for _ in range(READS):
        started = time.perf_counter()
        action()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)

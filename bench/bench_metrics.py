"""Prometheus metrics: what the request metrics cost each request, and what a scrape costs.

- middleware: `/health` requests through Django's whole handler and middleware chain (the test
  client, in this process, no network), with our request metrics (cryptostock/request_metrics.py)
  side by side with the same chain without them (the baseline), and with django-prometheus' own
  pair of middlewares instead (everything it can record); the lines after them give the
  microseconds each adds per request. Rounds interleaved, best of a few, as the machine is shared.
  Run it with PROMETHEUS_MULTIPROC_DIR set to an empty directory for the production server's
  multiprocess mode (each update a locked write to a shared file), without for one process.
- scrape: one `GET /metrics` with 50 collectors and 500 active instruments with bars, side by side
  with the baseline of its two database reads alone (the collector rows, the newest bar of each
  instrument): what formatting the page adds to reading it.

`python -m bench.run metrics` (SQLite or PostgreSQL).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from bench import BenchUnavailable, best_rate, best_rates_interleaved, measurement

REQUESTS = 3000
ROUNDS = 5
COLLECTORS = 50
INSTRUMENTS = 500
SCRAPES = 20
OURS = "cryptostock.request_metrics.RequestMetricsMiddleware"
# django-prometheus' own pair, recording all it can: what ours is measured against as well.
FULL = (
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
)


def health_rates(chains: list[list[str]]) -> list[float]:
    """Best requests/s through each middleware chain, the chains' rounds interleaved so that a change
    in the machine's load weighs on all of them alike."""
    from django.test import Client, override_settings

    clients = []
    for chain in chains:
        with override_settings(MIDDLEWARE=chain):
            client = Client(HTTP_HOST="127.0.0.1")
            # The test client builds its chain at its first request: here, under this chain's settings.
            assert client.get("/health").status_code == 200
            clients.append(client)
    runs = [lambda client=client: [client.get("/health") for _ in range(REQUESTS)] for client in clients]
    return best_rates_interleaved(REQUESTS, runs, ROUNDS)


def make_world() -> None:
    from django.utils import timezone

    from market.barstore import BarRow
    from market.models import CollectorStatus, Exchange, Instrument
    from market.services import store_bars

    exchange, _ = Exchange.objects.get_or_create(code="bench-metrics", defaults={"name": "Bench"})
    now = timezone.now()
    for k in range(COLLECTORS):
        CollectorStatus.objects.update_or_create(
            name=f"bench-{k}",
            defaults={"source": "binance", "started_at": now, "updated_at": now, "rejected_reasons": {"malformed": k}},
        )
    minute = datetime.now(UTC).replace(second=0, microsecond=0)
    rows = []
    for k in range(INSTRUMENTS):
        instrument, _ = Instrument.objects.get_or_create(exchange=exchange, symbol=f"C{k}/USDT")
        rows += [
            BarRow(instrument.pk, "1m", minute - timedelta(minutes=m), 10, 11, 9, 10.5, 5, 3, None, True)
            for m in range(3)
        ]
    store_bars(rows, publish=False)


def bare_reads() -> int:
    from django.db.models import OuterRef, Subquery

    from market.models import Bar, CollectorStatus, Instrument

    list(CollectorStatus.objects.all())
    newest = Bar.objects.filter(instrument=OuterRef("pk"), timeframe="1m").order_by("-time").values("time")[:1]
    rows = (
        Instrument.objects.active().annotate(newest=Subquery(newest)).values_list("exchange__code", "symbol", "newest")
    )
    return len(list(rows))


def run() -> Iterator[dict[str, Any]]:
    from django.conf import settings
    from django.test import Client

    mode = "multiprocess" if "PROMETHEUS_MULTIPROC_DIR" in os.environ else "one_process"
    if OURS not in settings.MIDDLEWARE:
        raise BenchUnavailable("METRICS_ENABLED is off: the request metrics are not in MIDDLEWARE")
    without = [name for name in settings.MIDDLEWARE if name != OURS]
    ours, baseline, full = health_rates([[*without, OURS], without, [FULL[0], *without, FULL[1]]])
    for label, rate in (("ours", ours), ("django_prometheus_all", full)):
        yield measurement(f"metrics.middleware.{mode}.{label}.vs_without", rate, "requests/s", baseline)
        yield measurement(f"metrics.middleware.{mode}.{label}.added_per_request", 1e6 / rate - 1e6 / baseline, "us")

    make_world()
    client = Client(HTTP_HOST="127.0.0.1")
    assert client.get("/metrics").status_code == 200
    scrape = best_rate(SCRAPES, lambda: [client.get("/metrics") for _ in range(SCRAPES)], ROUNDS)
    reads = best_rate(SCRAPES, lambda: [bare_reads() for _ in range(SCRAPES)], ROUNDS)
    name = f"metrics.scrape.{COLLECTORS}_collectors_{INSTRUMENTS}_instruments.vs_bare_reads"
    yield measurement(name, scrape, "scrapes/s", reads)

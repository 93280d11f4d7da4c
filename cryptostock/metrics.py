"""Prometheus metrics at /metrics (docs/metrics.md).

Two kinds of numbers, gathered at each scrape:
- the web processes' own: django-prometheus' request, response, latency and exception metrics
  (its middleware). The production server runs several daphne processes on one port and a scrape
  reaches one of them, so they count in prometheus_client's multiprocess mode (a directory of
  per-process files that `python -m cryptostock.webserver` sets up): every scrape sees the sum of all.
- the product's: collectors' health and the freshness of each active instrument's 1m bars, read
  from the database at the scrape. Collectors are other processes (often other hosts) and already
  report to the database every few seconds (CollectorStatus), so the database is the one place that
  knows all of them, and a collector needs no port of its own.

Only addresses in METRICS_ALLOWED_NETWORKS may read it (loopback and private networks by default,
where Prometheus usually runs): the page names every collector, host and instrument.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator
from datetime import datetime

from celery import states
from django.conf import settings
from django.db.models import OuterRef, Subquery
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseForbidden
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django_celery_results.models import TaskResult
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from market.models import Bar, CollectorState, CollectorStatus, Instrument

MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
BREAKER_STATES = ("closed", "half-open", "open")
# The collector counters (CollectorStatus) exported as Prometheus counters: (field, help).
COLLECTOR_COUNTERS = (
    ("messages", "Messages received from the source since the collector started"),
    ("trades", "Trades accepted since the collector started"),
    ("bars_stored", "Final bars written since the collector started"),
    ("rejected", "Messages and trades refused since the collector started, all reasons"),
    ("reconnects", "Reconnections to the source since the collector started"),
)
COLLECTOR_GAUGES = (
    ("messages_per_second", "Messages per second between the collector's last two reports"),
    ("buffered_bars", "Final bars waiting for the database"),
    ("symbols", "Instruments being collected"),
)


@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    if not settings.METRICS_ENABLED:
        raise Http404("metrics are turned off (METRICS_ENABLED)")
    if not client_allowed(request.META.get("REMOTE_ADDR", ""), settings.METRICS_ALLOWED_NETWORKS):
        return HttpResponseForbidden(
            "metrics are readable from METRICS_ALLOWED_NETWORKS only\n", content_type="text/plain"
        )
    registry = CollectorRegistry()
    registry.register(ProductCollector(timezone.now()))
    page = generate_latest(registry) + generate_latest(process_registry())
    return HttpResponse(page, content_type=CONTENT_TYPE_LATEST)


def process_registry() -> CollectorRegistry:
    """The web processes' metrics: all processes' summed in multiprocess mode, else this one's."""
    if MULTIPROCESS_DIR_VARIABLE not in os.environ:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


def client_allowed(address: str, networks: list[str]) -> bool:
    try:
        client = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(client in ipaddress.ip_network(network, strict=False) for network in networks)


class ProductCollector(Collector):
    """Collector health and bar freshness, from the database, as of `now`."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def collect(self) -> Iterator[Metric]:
        yield from collector_metrics(list(CollectorStatus.objects.all()), self.now, settings.COLLECTOR_STALE_SECONDS)
        yield bar_age_metric(self.now)
        yield from backup_metrics(self.now)


def collector_metrics(statuses: list[CollectorStatus], now: datetime, stale_seconds: float) -> Iterator[Metric]:
    labels = ["collector", "source"]
    up = GaugeMetricFamily(
        "cryptostock_collector_up",
        f"1 while the collector runs and reported within COLLECTOR_STALE_SECONDS ({stale_seconds:g} s)",
        labels=labels,
    )
    state = GaugeMetricFamily(
        "cryptostock_collector_state", "1 for the collector's current state", labels=[*labels, "state"]
    )
    breaker = GaugeMetricFamily(
        "cryptostock_collector_breaker_state",
        "1 for the state of the collector's circuit breaker",
        labels=[*labels, "state"],
    )
    counters = {
        name: CounterMetricFamily(f"cryptostock_collector_{name}", text, labels=labels)
        for name, text in COLLECTOR_COUNTERS
    }
    gauges = {
        name: GaugeMetricFamily(f"cryptostock_collector_{name}", text, labels=labels) for name, text in COLLECTOR_GAUGES
    }
    report_age = GaugeMetricFamily(
        "cryptostock_collector_report_age_seconds", "Seconds since the collector last reported", labels=labels
    )
    message_age = GaugeMetricFamily(
        "cryptostock_collector_last_message_age_seconds",
        "Seconds since the collector's last message from its source (absent before the first)",
        labels=labels,
    )
    rejected = CounterMetricFamily(
        "cryptostock_collector_rejected_by_reason", "Messages and trades refused, by reason", labels=[*labels, "reason"]
    )
    for status in statuses:
        key = [status.name, status.source]
        running = status.state != CollectorState.STOPPED
        up.add_metric(key, float(running and not status.is_stale(now, stale_seconds)))
        for choice in CollectorState.values:
            state.add_metric([*key, choice], float(status.state == choice))
        for choice in BREAKER_STATES:
            breaker.add_metric([*key, choice], float(status.breaker_state == choice))
        for name, family in counters.items():
            family.add_metric(key, float(getattr(status, name)))
        for name, gauge in gauges.items():
            gauge.add_metric(key, float(getattr(status, name)))
        report_age.add_metric(key, (now - status.updated_at).total_seconds())
        if status.last_message_at is not None:
            message_age.add_metric(key, (now - status.last_message_at).total_seconds())
        for reason, count in sorted(status.rejected_reasons.items()):
            rejected.add_metric([*key, reason], float(count))
    yield from (up, state, breaker, *counters.values(), *gauges.values(), report_age, message_age, rejected)


def bar_age_metric(now: datetime) -> Metric:
    """Seconds since the open time of each active instrument's newest 1m bar: one index lookup per
    instrument. An instrument without bars has no sample (absent() in an alert rule finds it)."""
    newest = Bar.objects.filter(instrument=OuterRef("pk"), timeframe="1m").order_by("-time").values("time")[:1]
    rows = (
        Instrument.objects.active()
        .annotate(newest=Subquery(newest))
        .filter(newest__isnull=False)
        .values_list("exchange__code", "symbol", "newest")
        .order_by("exchange__code", "symbol")
    )
    age = GaugeMetricFamily(
        "cryptostock_bar_age_seconds",
        "Seconds since the open time of the newest stored 1m bar, per active instrument",
        labels=["exchange", "symbol"],
    )
    for exchange, symbol, time in rows:
        age.add_metric([exchange, symbol], (now - time).total_seconds())
    return age


BACKUP_TASK = "backups.tasks.backup_task"


def backup_metrics(now: datetime) -> Iterator[Metric]:
    """The nightly backup, from the task's results (django-celery-results): the age of the last one
    that succeeded, and whether the last run failed. No sample before the first run; a backup taken
    by hand with `manage.py backup` is not a task run and does not count."""
    runs = TaskResult.objects.filter(task_name=BACKUP_TASK, status__in=[states.SUCCESS, states.FAILURE])
    last_success = runs.filter(status=states.SUCCESS).order_by("-date_done").values_list("date_done", flat=True)[:1]
    last_run = runs.order_by("-date_done").values_list("status", flat=True)[:1]
    age = GaugeMetricFamily(
        "cryptostock_backup_age_seconds", "Seconds since the last nightly backup that succeeded finished"
    )
    for done in last_success:
        age.add_metric([], (now - done).total_seconds())
    failed = GaugeMetricFamily("cryptostock_backup_last_run_failed", "1 if the last nightly backup failed, else 0")
    for status in last_run:
        failed.add_metric([], float(status == states.FAILURE))
    yield from (age, failed)

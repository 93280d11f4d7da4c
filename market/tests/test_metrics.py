"""/metrics: the web processes' request metrics and the product's collector and bar metrics."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.test import Client, override_settings
from django.urls import path
from django.utils import timezone
from django_celery_results.models import TaskResult
from prometheus_client.parser import text_string_to_metric_families

from cryptostock.metrics import client_allowed
from cryptostock.metrics import metrics as metrics_view
from cryptostock.webserver import metrics_directory, wait_until_serving
from market.barstore import BarRow
from market.models import CollectorState, CollectorStatus
from market.services import store_bars
from market.tests.test_webserver import free_port

ROOT = Path(__file__).resolve().parents[2]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of a Prometheus text page."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(client: Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    return samples(response.content.decode())


def collector_status(name: str, *, age_seconds: float, state: str = CollectorState.STREAMING, **fields) -> None:
    updated = timezone.now() - timedelta(seconds=age_seconds)
    CollectorStatus.objects.create(
        name=name, source="binance", state=state, started_at=updated, updated_at=updated, **fields
    )


def bar_row(instrument_id: int, time: datetime) -> BarRow:
    return BarRow(instrument_id, "1m", time, 10, 11, 9, 10.5, 5, 3, None, True)


def labels(**pairs: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(pairs.items()))


@pytest.mark.django_db
def test_it_counts_the_requests_this_process_answered(client):
    before = scrape(client)
    for _ in range(3):
        client.get("/health")

    after = scrape(client)

    key = ("django_http_responses_total_by_status_view_method_total", labels(method="GET", status="200", view="health"))
    assert after[key] - before.get(key, 0.0) == 3


def broken_view(request):
    raise LookupError("a bug")


urlpatterns = [path("metrics", metrics_view), path("broken", broken_view, name="broken")]


@pytest.mark.django_db
@override_settings(ROOT_URLCONF=__name__)
def test_a_view_that_raises_is_counted_by_exception_type_and_as_a_500():
    client = Client(raise_request_exception=False)
    before = scrape(client)

    assert client.get("/broken").status_code == 500

    after = scrape(client)
    for key in [
        ("django_http_exceptions_total_by_type_total", labels(type="LookupError")),
        ("django_http_exceptions_total_by_view_total", labels(view="broken")),
        ("django_http_responses_total_by_status_view_method_total", labels(method="GET", status="500", view="broken")),
        ("django_http_requests_latency_seconds_by_view_method_count", labels(method="GET", view="broken")),
    ]:
        assert after[key] - before.get(key, 0.0) == 1, key


@pytest.mark.django_db
def test_it_reports_each_collectors_health_from_the_database(client):
    collector_status(
        "binance",
        age_seconds=2,
        messages=1200,
        bars_stored=40,
        reconnects=2,
        rejected=3,
        rejected_reasons={"malformed aggTrade": 3},
        messages_per_second=12.5,
        last_message_at=timezone.now() - timedelta(seconds=1),
    )
    collector_status("binance-2of2", age_seconds=600, breaker_state="open")

    metrics = scrape(client)

    live, dead = labels(collector="binance", source="binance"), labels(collector="binance-2of2", source="binance")
    assert metrics[("cryptostock_collector_up", live)] == 1
    assert metrics[("cryptostock_collector_up", dead)] == 0  # silent for longer than COLLECTOR_STALE_SECONDS
    assert metrics[("cryptostock_collector_messages_total", live)] == 1200
    assert metrics[("cryptostock_collector_bars_stored_total", live)] == 40
    assert metrics[("cryptostock_collector_reconnects_total", live)] == 2
    assert metrics[("cryptostock_collector_messages_per_second", live)] == 12.5
    reason = labels(collector="binance", source="binance", reason="malformed aggTrade")
    assert metrics[("cryptostock_collector_rejected_by_reason_total", reason)] == 3
    assert metrics[("cryptostock_collector_breaker_state", (*dead, ("state", "open")))] == 1
    assert metrics[("cryptostock_collector_breaker_state", (*dead, ("state", "closed")))] == 0
    assert metrics[("cryptostock_collector_state", (*live, ("state", "streaming")))] == 1
    assert 1 <= metrics[("cryptostock_collector_last_message_age_seconds", live)] < 60
    assert 600 <= metrics[("cryptostock_collector_report_age_seconds", dead)] < 660
    assert ("cryptostock_collector_last_message_age_seconds", dead) not in metrics  # no message yet


@pytest.mark.django_db
def test_a_stopped_collector_is_not_up_however_recent_its_report(client):
    collector_status("alpaca", age_seconds=1, state=CollectorState.STOPPED)

    assert scrape(client)[("cryptostock_collector_up", labels(collector="alpaca", source="binance"))] == 0


@pytest.mark.django_db
def test_it_reports_the_age_of_each_active_instruments_newest_bar(client, instrument):
    newest = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=5)
    store_bars([bar_row(instrument.pk, newest - timedelta(minutes=1)), bar_row(instrument.pk, newest)])

    metrics = scrape(client)

    key = ("cryptostock_bar_age_seconds", labels(exchange=instrument.exchange.code, symbol=instrument.symbol))
    assert 300 <= metrics[key] < 400


@pytest.mark.django_db
def test_it_reports_the_nightly_backups_age_and_whether_its_last_run_failed(client):
    assert not [name for name, _ in scrape(client) if name.startswith("cryptostock_backup_")]  # no run yet

    def task_result(task_id: str, status: str, hours_ago: float) -> None:
        TaskResult.objects.create(task_id=task_id, task_name="backups.tasks.backup_task", status=status)
        done = timezone.now() - timedelta(hours=hours_ago)
        TaskResult.objects.filter(task_id=task_id).update(date_done=done)  # date_done is auto_now

    task_result("older-success", "SUCCESS", 54)
    task_result("success", "SUCCESS", 30)
    task_result("failure", "FAILURE", 6)
    TaskResult.objects.create(task_id="other", task_name="market.tasks.rollup_task", status="SUCCESS")

    metrics = scrape(client)

    assert 30 * 3600 <= metrics[("cryptostock_backup_age_seconds", ())] < 30 * 3600 + 60
    assert metrics[("cryptostock_backup_last_run_failed", ())] == 1
    task_result("newest", "SUCCESS", 1)
    assert scrape(client)[("cryptostock_backup_last_run_failed", ())] == 0


@pytest.mark.django_db
def test_an_address_outside_the_allowed_networks_is_refused():
    response = Client(REMOTE_ADDR="203.0.113.9").get("/metrics")

    assert response.status_code == 403
    assert b"METRICS_ALLOWED_NETWORKS" in response.content


@pytest.mark.django_db
@override_settings(METRICS_ENABLED=False)
def test_turned_off_there_is_no_metrics_page(client):
    assert client.get("/metrics").status_code == 404


@pytest.mark.parametrize(
    ("address", "allowed"),
    [("127.0.0.1", True), ("10.1.2.3", True), ("::1", True), ("203.0.113.9", False), ("", False), ("bogus", False)],
)
def test_client_addresses_are_matched_against_networks(address, allowed):
    assert client_allowed(address, ["127.0.0.0/8", "10.0.0.0/8", "::1/128"]) is allowed


@pytest.mark.parametrize(("enabled", "recorded"), [("true", "True"), ("false", "False")])
def test_turned_off_no_request_metrics_are_recorded_either(enabled, recorded):
    middleware = "cryptostock.request_metrics.RequestMetricsMiddleware"
    probe = f"import cryptostock.settings as s; print({middleware!r} in s.MIDDLEWARE)"
    env = {**os.environ, "METRICS_ENABLED": enabled, "PYTHONPATH": str(ROOT)}

    result = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, cwd=ROOT, check=True
    )

    assert result.stdout.strip() == recorded


def test_a_bad_network_in_the_settings_is_a_configuration_error():
    command = [sys.executable, "-c", "import cryptostock.settings"]
    env = {**os.environ, "METRICS_ALLOWED_NETWORKS": "10.0.0.0/8,not-a-network", "PYTHONPATH": str(ROOT)}

    result = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)

    assert result.returncode != 0
    assert "METRICS_ALLOWED_NETWORKS: 'not-a-network' is not an IP network" in result.stderr


def test_a_chosen_multiprocess_directory_is_emptied_of_an_earlier_runs_counts(tmp_path, monkeypatch):
    (tmp_path / "counter_123.db").write_bytes(b"old")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))

    with metrics_directory() as directory:
        assert directory == tmp_path
        assert list(tmp_path.iterdir()) == []


def test_without_a_chosen_directory_the_workers_get_a_temporary_one(monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)

    with metrics_directory() as directory:
        assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(directory)
        assert directory.is_dir()

    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    assert not directory.exists()


HEALTH_200 = re.compile(
    r'^django_http_responses_total_by_status_view_method_total\{method="GET",status="200",view="health"\} (\S+)$', re.M
)


@pytest.mark.slow
def test_with_several_web_processes_every_scrape_counts_the_requests_of_all(tmp_path):
    """Two daphne processes share the port and each request goes to either; a scrape, whichever
    process answers it, must count all the requests (each process alone saw about half)."""
    port = free_port()
    env = {**os.environ, "DEBUG": "0", "ALLOWED_HOSTS": "127.0.0.1", "SECRET_KEY": "metrics-test-key"}
    env.pop("DATABASE_URL", None)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(VAR_DIR=str(tmp_path), PYTHONPATH=str(ROOT))
    command = [
        sys.executable,
        "-m",
        "cryptostock.webserver",
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "2",
    ]
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)  # /metrics reads it
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    try:
        wait_until_serving(f"http://127.0.0.1:{port}/health", process)
        for _ in range(40):  # a new connection each: the kernel spreads them over both processes
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10).read()
        counts = set()
        for _ in range(6):
            page = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
            found = HEALTH_200.search(page)
            assert found is not None, page
            counts.add(float(found.group(1)))
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)

    # Every scrape saw the same count, of all 40 requests above (and wait_until_serving's: one, or
    # more if one of its attempts waited in a starting process's queue past its timeout).
    assert len(counts) == 1
    assert counts.pop() >= 41

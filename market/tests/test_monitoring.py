"""The monitoring bundle (deploy/: Prometheus' scrape config and alert rules, Grafana's data source
and dashboards) reads only metrics that /metrics serves, under the names it serves them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARDS = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
# Product metrics are named cryptostock_*; the web processes' request metrics django_http_*.
METRIC_NAME = re.compile(r"\b(?:cryptostock|django_http)_[a-z_]+\b")
SAMPLE_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created")}


def served_metric_names(client) -> set[str]:
    """Every sample name /metrics can serve: its families' TYPE lines name them even before a first
    sample (a collector, a request), plus the suffixes of counters and histograms."""
    page = client.get("/metrics").content.decode()
    names = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", page, flags=re.MULTILINE):
        names.add(name)
        names.update(name + suffix for suffix in SAMPLE_SUFFIXES.get(kind, ()))
    return names


def dashboard_expressions() -> dict[str, list[str]]:
    return {
        path.name: [target["expr"] for panel in json.loads(path.read_text())["panels"] for target in panel["targets"]]
        for path in DASHBOARDS
    }


def alert_expressions() -> list[str]:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


@pytest.mark.django_db
def test_every_dashboard_and_alert_reads_metrics_that_the_product_serves(client):
    served = served_metric_names(client)
    expressions = [*alert_expressions(), *(expr for exprs in dashboard_expressions().values() for expr in exprs)]

    named = {name for expression in expressions for name in METRIC_NAME.findall(expression)}

    assert named, "the expressions name no product metric"
    assert named <= served, f"not served by /metrics: {sorted(named - served)}"
    # and every product metric family is on some dashboard
    families = {family(name) for name in served if name.startswith("cryptostock_")}
    shown = {
        family(name) for exprs in dashboard_expressions().values() for e in exprs for name in METRIC_NAME.findall(e)
    }
    assert families - shown == set()


def family(name: str) -> str:
    return re.sub(r"(_total|_created|_bucket|_count|_sum)+$", "", name)


def test_four_dashboards_on_the_provisioned_data_source():
    datasources = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uid = datasources["datasources"][0]["uid"]

    assert [path.stem for path in DASHBOARDS] == ["api", "collectors", "market-data", "operations"]
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        assert board["uid"].startswith("cryptostock-")
        assert {panel["datasource"]["uid"] for panel in board["panels"]} == {uid}, path.name
        assert len({panel["id"] for panel in board["panels"]}) == len(board["panels"]), path.name


def test_prometheus_scrapes_the_web_service_and_loads_the_alert_rules():
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())

    [job] = config["scrape_configs"]
    assert (job["metrics_path"], job["static_configs"][0]["targets"]) == ("/metrics", ["web:8000"])
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    deployed = {
        rule["alert"]
        for group in yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"]
        for rule in group["rules"]
    }
    documented = set(re.findall(r"^- alert: (\w+)", (DEPLOY.parent / "docs" / "metrics.md").read_text(), re.MULTILINE))
    assert (
        deployed
        == documented
        == {"CollectorDown", "BarsStale", "CollectorRejecting", "BackupMissing", "SignInFailures"}
    )

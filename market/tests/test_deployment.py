"""The production docker-compose file parses and has every service the product runs as."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from market.sources import SOURCE_NAMES

ROOT = Path(__file__).resolve().parents[2]


def compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, check=False).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_docker_compose_config_parses_with_every_service():
    command = compose_command()
    if command is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have docker compose or docker-compose (.ci/run installs it)")
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")

    result = subprocess.run(
        [*command, "config"],
        cwd=ROOT,
        # every profile on: services behind one (Alpaca, futures, the demo replay) are listed too
        env={**os.environ, "SECRET_KEY": "compose-config-check", "COMPOSE_PROFILES": "alpaca,futures,demo"},
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert {"db", "redis", "migrate", "web", "worker", "beat"} <= set(services)
    assert "timescaledb" in services["db"]["image"]
    collected = {
        service["command"][-1]: name
        for name, service in services.items()
        if service.get("command", [])[:4] == ["python", "manage.py", "collect", "--source"]
    }
    assert set(collected) == set(SOURCE_NAMES), "one collector service per source"
    assert "backups" in str(services["worker"]["volumes"])  # the daily backup outlives the container
    assert services["web"]["environment"]["REDIS_URL"] == "redis://redis:6379/0"


def compose_file() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_every_variable_compose_passes_on_is_one_the_settings_read():
    from market.tests.test_settings import settings_variables

    passed_on = set(compose_file()["x-app-environment"])

    assert passed_on - settings_variables() == set(), "a typo, or a variable the product does not read"


def test_the_worker_has_what_its_tasks_need_and_shares_exports_with_the_web_server():
    services = compose_file()["services"]

    assert {"ALPACA_API_KEY", "ALPACA_SECRET_KEY", "BACKUP_COPY_COMMAND"} <= set(services["worker"]["environment"])
    assert "exports:/app/var/exports" in services["web"]["volumes"]
    assert "exports:/app/var/exports" in services["worker"]["volumes"]


def test_prometheus_scrapes_a_host_the_web_server_answers_to():
    scrape = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = [t for job in scrape["scrape_configs"] for c in job["static_configs"] for t in c["targets"]]
    allowed = compose_file()["x-app-environment"]["ALLOWED_HOSTS"].split(":-", 1)[1].rstrip("}").split(",")

    assert {target.split(":")[0] for target in targets if target.endswith(":8000")} <= set(allowed)


def test_the_web_containers_health_check_leaves_collectors_to_their_own_alert():
    check = " ".join(compose_file()["services"]["web"]["healthcheck"]["test"])

    assert "/ready?skip=collectors" in check

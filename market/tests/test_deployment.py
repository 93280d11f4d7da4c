"""The production docker-compose file parses and has every service the product runs as."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

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

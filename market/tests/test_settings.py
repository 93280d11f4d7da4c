"""Settings come from the environment only, with safe defaults and loud errors on bad values."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from cryptostock.settings import envbool

ROOT = Path(__file__).resolve().parents[2]


def settings_variables() -> set[str]:
    source = (ROOT / "cryptostock" / "settings.py").read_text()
    return set(re.findall(r'(?:os\.environ\.get|env(?:bool|int|float|list))\("([A-Z_]+)"', source))


def test_env_example_lists_every_variable_settings_reads():
    listed = set(re.findall(r"^([A-Z_]+)=", (ROOT / ".env.example").read_text(), flags=re.MULTILINE))
    assert settings_variables() - listed == set()


@pytest.mark.parametrize(("raw", "expected"), [("1", True), ("yes", True), ("off", False), ("", False)])
def test_envbool_reads_clear_values(monkeypatch, raw, expected):
    monkeypatch.setenv("SOME_FLAG", raw)
    assert envbool("SOME_FLAG", not expected) is expected


def test_envbool_rejects_a_value_it_would_have_to_guess(monkeypatch):
    monkeypatch.setenv("SOME_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="SOME_FLAG='maybe' is not a boolean"):
        envbool("SOME_FLAG", False)


def load_settings(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG", "DATABASE_URL", "REDIS_URL")}
    return subprocess.run(
        [sys.executable, "-c", "import cryptostock.settings as s; print(s.DATABASES['default']['ENGINE'])"],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=False,
    )


def test_it_refuses_to_start_without_a_secret_key_when_debug_is_off():
    result = load_settings()
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr


def test_it_defaults_to_sqlite_and_switches_to_postgres_by_database_url():
    assert load_settings(DEBUG="1").stdout.strip() == "django.db.backends.sqlite3"
    postgres = load_settings(SECRET_KEY="x", DATABASE_URL="postgres://u@h:5432/db")
    assert postgres.stdout.strip() == "django.db.backends.postgresql"

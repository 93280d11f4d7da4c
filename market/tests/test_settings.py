"""Settings come from the environment only, with safe defaults and loud errors on bad values."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from cryptostock.settings import envbool, envsecret

ROOT = Path(__file__).resolve().parents[2]


def settings_variables() -> set[str]:
    source = (ROOT / "cryptostock" / "settings.py").read_text()
    # os.environ.get, the env* helpers and settings' own readers (_retention_days, ...), a call's
    # first argument possibly on the next line.
    return set(re.findall(r'\b(?:os\.environ\.get|env\w+|_[a-z_]+)\(\s*"([A-Z][A-Z0-9_]+)"', source))


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


def test_a_secret_is_read_from_the_file_its_FILE_variable_names(monkeypatch, tmp_path):
    secret = tmp_path / "secret_key"
    secret.write_text("s3cret-from-a-file\n")
    monkeypatch.delenv("SOME_SECRET", raising=False)
    monkeypatch.setenv("SOME_SECRET_FILE", str(secret))

    assert envsecret("SOME_SECRET") == "s3cret-from-a-file"


def test_a_secret_set_both_ways_or_in_a_missing_file_is_refused(monkeypatch, tmp_path):
    monkeypatch.delenv("SOME_SECRET", raising=False)
    monkeypatch.setenv("SOME_SECRET_FILE", str(tmp_path / "missing"))
    with pytest.raises(ImproperlyConfigured, match=r"SOME_SECRET_FILE='.*missing' cannot be read: No such file"):
        envsecret("SOME_SECRET")
    monkeypatch.setenv("SOME_SECRET", "inline")
    with pytest.raises(ImproperlyConfigured, match="SOME_SECRET and SOME_SECRET_FILE are both set"):
        envsecret("SOME_SECRET")


def test_the_secret_key_can_come_from_a_file(tmp_path):
    secret = tmp_path / "secret_key"
    secret.write_text("from-a-file")

    result = load_settings(SECRET_KEY_FILE=str(secret))

    assert result.returncode == 0, result.stderr


LOG_A_RECORD = (
    "import django; django.setup(); import logging; "
    "logging.getLogger('cryptostock.audit').info('signed in: %s', 'vera', extra={'kind': 'login'})"
)


def run_logging(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LOG_")}
    return subprocess.run(
        [sys.executable, "-c", LOG_A_RECORD],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "cryptostock.settings", "SECRET_KEY": "x", **env},
        capture_output=True,
        text=True,
        check=False,
    )


def test_json_logs_are_one_object_per_line_with_the_records_extra_fields(tmp_path):
    log_file = tmp_path / "cryptostock.log"

    result = run_logging(LOG_FORMAT="json", LOG_FILE=str(log_file))

    assert result.returncode == 0, result.stderr
    [line] = [line for line in result.stderr.splitlines() if '"cryptostock.audit"' in line]
    record = json.loads(line)
    assert {k: record[k] for k in ("level", "logger", "message", "kind")} == {
        "level": "INFO",
        "logger": "cryptostock.audit",
        "message": "signed in: vera",
        "kind": "login",
    }
    assert record["time"].endswith("+00:00")
    assert json.loads(log_file.read_text().splitlines()[-1])["message"] == "signed in: vera"


def test_plain_logs_are_the_default_and_an_unknown_format_is_refused():
    plain = run_logging()
    unknown = run_logging(LOG_FORMAT="xml")

    assert " INFO cryptostock.audit signed in: vera" in plain.stderr
    assert unknown.returncode != 0
    assert "LOG_FORMAT='xml': use plain or json" in unknown.stderr

"""Security headers, CORS, and `manage.py check --deploy` with production settings."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("path", ["/", "/api/docs/", "/api/v1/me/"])
def test_pages_and_api_responses_carry_the_security_headers(client, path):
    response = client.get(path)

    csp = response["Content-Security-Policy"]
    assert "default-src 'self'" in csp
    assert "script-src 'self'" in csp  # plus 'nonce-...' on pages whose templates use {{ csp_nonce }}
    assert "frame-ancestors 'none'" in csp
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"


def test_hsts_is_sent_over_https_when_configured(client, settings):
    settings.SECURE_HSTS_SECONDS = 31_536_000

    assert "Strict-Transport-Security" not in client.get("/health")
    assert client.get("/health", secure=True)["Strict-Transport-Security"].startswith("max-age=31536000")


def test_with_tls_plain_http_is_redirected_but_the_probes_and_metrics_are_not(client, settings):
    settings.SECURE_SSL_REDIRECT = True  # what TLS=1 sets

    assert client.get("/api/v1/instruments/").status_code == 301
    assert [client.get(path).status_code for path in ("/health", "/ready", "/metrics")] == [200, 200, 200]


def test_the_docs_pages_need_no_inline_script(client):
    for path in ("/api/docs/", "/api/redoc/"):
        page = client.get(path).content.decode()
        assert "<script>" not in page, path  # every script has a src (the CSP allows only those)


def test_cors_allows_only_the_configured_origins_and_only_the_api(client, settings):
    settings.CORS_ALLOWED_ORIGINS = ["https://app.example.com"]

    allowed = client.get("/api/schema/", headers={"Origin": "https://app.example.com"})
    other = client.get("/api/schema/", headers={"Origin": "https://evil.example.com"})
    page = client.get("/health", headers={"Origin": "https://app.example.com"})
    preflight = client.options(
        "/api/v1/me/",
        headers={
            "Origin": "https://app.example.com",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )

    assert allowed["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "Access-Control-Allow-Origin" not in other
    assert "Access-Control-Allow-Origin" not in page
    assert preflight.status_code == 200
    assert "authorization" in preflight["Access-Control-Allow-Headers"]
    assert "Access-Control-Allow-Credentials" not in allowed
    assert allowed["Access-Control-Expose-Headers"] == "Retry-After, X-Request-ID"


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    keep = {"PATH", "HOME", "LANG", "PYTHONPATH", "VIRTUAL_ENV"}
    env = {key: value for key, value in os.environ.items() if key in keep}
    env.update(
        SECRET_KEY=secrets.token_urlsafe(50),
        DEBUG="0",
        TLS="1",
        ALLOWED_HOSTS="markets.example.com",
        DATABASE_URL="postgres://cryptostock@db:5432/cryptostock",
        REDIS_URL="redis://redis:6379/0",
        VAR_DIR=str(tmp_path),
    )

    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_the_chart_pages_inline_script_runs_by_the_csp_nonce(client):
    response = client.get("/")

    nonce = response["Content-Security-Policy"].split("'nonce-", 1)[1].split("'", 1)[0]
    assert f'nonce="{nonce}"'.encode() in response.content

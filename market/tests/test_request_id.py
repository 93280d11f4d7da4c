"""Request ids (cryptostock.request_id): on the response, on the log lines written while a request is
served, on the audit trail's change records, and through Redis to the worker that runs a task the
request queued."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from auditlog.models import LogEntry
from celery.contrib.testing.worker import start_worker
from celery.signals import task_prerun
from django.test import Client

from accounts.roles import ADMIN, VIEWER
from accounts.tests.clients import logged_in
from cryptostock import request_id
from cryptostock.celery import app
from cryptostock.request_id import HEADER, RequestIdFilter, current_request_id

ROOT = Path(__file__).resolve().parents[2]


def test_each_response_carries_a_new_id_or_the_proxys(db):
    client = Client()

    fresh = client.get("/health")[HEADER]
    again = client.get("/health")[HEADER]
    from_proxy = client.get("/health", headers={HEADER: "7f1c2b9a0d3e4f5a"})[HEADER]
    forged = client.get("/health", headers={HEADER: "x' OR 1=1 -- a note for the log reader"})[HEADER]

    assert re.fullmatch(r"[0-9a-f]{32}", fresh)
    assert fresh != again
    assert from_proxy == "7f1c2b9a0d3e4f5a"
    assert re.fullmatch(r"[0-9a-f]{32}", forged)  # replaced: not a shape an id has


class Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.addFilter(RequestIdFilter())
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def audit_records():
    handler = Kept()
    logger = logging.getLogger("cryptostock.audit")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler.records
    logger.removeHandler(handler)
    logger.setLevel(previous)


def test_log_lines_and_audit_entries_carry_the_requests_id(make_user, audit_records):
    admin = logged_in(make_user(ADMIN))
    viewer = make_user(VIEWER)
    audit_records.clear()

    response = admin.post("/admin/auth/user/", {"action": "make_analyst", "_selected_action": [viewer.pk]})

    sent = response[HEADER]
    entry = LogEntry.objects.get_for_object(viewer).order_by("-id").first()
    assert entry is not None
    assert entry.cid == sent
    found = admin.get(f"/api/v1/audit/changes/?request_id={sent}").json()["results"]
    assert [change["request_id"] for change in found] == [sent] * len(found)
    assert entry.pk in [change["id"] for change in found]
    logged = [r for r in audit_records if getattr(r, "audit", None) == "change"]
    assert logged
    assert {r.request_id for r in logged} == {sent}
    assert logged[0].request_tag == f" [request {sent}]"
    # outside a request: no id, and the plain format adds nothing
    logging.getLogger("cryptostock.audit").info("outside")
    assert (audit_records[-1].request_id, audit_records[-1].request_tag) == (None, "")


def test_json_log_lines_have_the_request_id_field(tmp_path):
    script = (
        "import django; django.setup(); import logging; from django.test import Client; "
        "Client(HTTP_HOST='127.0.0.1').post('/api/v1/auth/token/', {'username': 'nobody', 'password': 'x'}, "
        "content_type='application/json', headers={'X-Request-ID': 'req-0123456789'})"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOG_", "DATABASE_URL", "REDIS_URL"))}
    env.update(
        DJANGO_SETTINGS_MODULE="cryptostock.settings",
        SECRET_KEY="x",
        LOG_FORMAT="json",
        VAR_DIR=str(tmp_path),
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
    )
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=300)

    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )

    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    failed = [line for line in lines if line.get("kind") == "login_failed"]
    assert [line["request_id"] for line in failed] == ["req-0123456789"]
    assert all("request_tag" not in line for line in lines)


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs Redis (REDIS_URL) for a real worker")
@pytest.mark.django_db(transaction=True)
def test_a_task_queued_in_a_request_runs_with_its_id_on_a_real_worker(settings):
    from market.tasks import rollup_task

    settings.CELERY_TASK_ALWAYS_EAGER = False
    app.loader.import_default_modules()
    seen: list[str | None] = []

    def note(**kwargs: object) -> None:
        seen.append(current_request_id())

    task_prerun.connect(note, weak=False)  # after cryptostock.celery's enter_task: sees what it set
    token = request_id._current.set("req-from-a-request-42")  # what the middleware does
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=30):
            rollup_task.delay().get(timeout=60)
    finally:
        request_id._current.reset(token)
        task_prerun.disconnect(note)

    assert seen == ["req-from-a-request-42"]


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs Redis (REDIS_URL) for a real worker")
def test_a_celery_worker_logs_in_the_products_format_not_celerys():
    env = {**os.environ, "LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"}
    worker = subprocess.Popen(
        # a queue of its own: it must not take another test's (or run's) tasks
        [sys.executable, "-m", "celery", "-A", "cryptostock", "worker", "--pool", "solo", "--without-mingle",
         "--without-gossip", "-Q", f"logging-check-{uuid.uuid4().hex}"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines = []
    try:
        assert worker.stderr is not None
        for line in worker.stderr:
            lines.append(line)
            if "ready." in line or len(lines) > 200:
                break
    finally:
        worker.terminate()
        worker.wait(timeout=30)

    ready = [json.loads(line) for line in lines if line.startswith("{") and "ready." in line]
    assert [(r["level"], r["logger"]) for r in ready] == [("INFO", "celery.apps.worker")], "".join(lines[-20:])
    assert "request_id" in ready[0]

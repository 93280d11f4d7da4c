"""The audit trail: sign-in events on the web pages and the API, and who changed users, roles,
instruments, alert rules and schedules (accounts.audit)."""

from __future__ import annotations

import logging
import sys
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from auditlog.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from accounts.audit import HIDDEN, process_name
from accounts.models import AuthEvent
from accounts.roles import ADMIN, ANALYST, VIEWER
from accounts.services import create_user, prune_audit_trail, set_role
from accounts.tests.clients import logged_in
from alerts.models import AlertRule
from market.models import Exchange, Instrument
from market.tests.test_metrics import labels, scrape

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery-staple"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) audit-test"


@pytest.fixture
def vera(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return create_user(username="vera", password=PASSWORD, role=VIEWER)


def post_json(client: Client, path: str, body: dict[str, Any], **headers: str):
    return client.post(path, body, content_type="application/json", headers=headers)


def events() -> list[tuple[str, str, str, int | None]]:
    return [(e.kind, e.via, e.username, e.user_id) for e in AuthEvent.objects.order_by("id")]


def changes_of(instance: Any) -> list[LogEntry]:
    return list(LogEntry.objects.get_for_object(instance).order_by("id"))


# --- Sign-in events -------------------------------------------------------------------------------


def test_signing_in_and_out_on_the_web_page_is_recorded_with_the_client(vera):
    client = Client(REMOTE_ADDR="203.0.113.7", HTTP_USER_AGENT=BROWSER)

    client.post("/accounts/login/", {"username": "vera", "password": "wrong"})
    client.post("/accounts/login/", {"username": "vera", "password": PASSWORD})
    client.post("/accounts/logout/")

    assert events() == [
        ("login_failed", "web", "vera", None),
        ("login", "web", "vera", vera.pk),
        ("logout", "web", "vera", vera.pk),
    ]
    assert {(e.address, e.user_agent) for e in AuthEvent.objects.all()} == {("203.0.113.7", BROWSER)}


def test_an_unknown_user_is_recorded_by_the_name_tried(db):
    Client().post("/accounts/login/", {"username": "mallory", "password": "guess"})

    assert events() == [("login_failed", "web", "mallory", None)]


def test_api_sign_in_wrong_password_and_logout_are_recorded(client, vera):
    post_json(client, "/api/v1/auth/token/", {"username": "vera", "password": "wrong"})
    tokens = post_json(client, "/api/v1/auth/token/", {"username": "vera", "password": PASSWORD}).json()
    logout = post_json(client, "/api/v1/auth/logout/", {"refresh": tokens["refresh"]})

    assert logout.status_code == 200
    assert events() == [
        ("login_failed", "api", "vera", None),
        ("login", "api", "vera", vera.pk),
        ("logout", "api", "vera", vera.pk),
    ]


def test_a_refused_logout_records_nothing(client, vera):
    response = post_json(client, "/api/v1/auth/logout/", {"refresh": "not-a-token"})

    assert response.status_code == 401
    assert events() == []


def test_revoking_a_login_is_recorded(client, vera):
    post_json(client, "/api/v1/auth/token/", {"username": "vera", "password": PASSWORD})
    session = logged_in(vera)
    token_id = session.get("/api/v1/me/tokens/").json()["results"][0]["id"]

    session.post(f"/api/v1/me/tokens/{token_id}/revoke/")

    assert events()[-1] == ("token_revoked", "api", "vera", vera.pk)


def test_refused_attempts_are_recorded_once_per_client_and_limit_window(client, vera, clock):
    body = {"username": "vera", "password": "guess"}
    for _ in range(13):
        post_json(client, "/api/v1/auth/token/", body)
    clock.now += 60
    for _ in range(12):
        post_json(client, "/api/v1/auth/token/", body)

    kinds = [kind for kind, *_ in events()]
    assert kinds.count("login_failed") == 20  # ten a minute get through to the password check
    assert kinds.count("throttled") == 2  # five refusals, one per window
    assert AuthEvent.objects.filter(kind="throttled", username="vera").count() == 2


def test_refused_web_sign_ins_are_recorded_too(vera, clock):
    client = Client()
    for _ in range(12):
        client.post("/accounts/login/", {"username": "vera", "password": "guess"})

    assert [kind for kind, *_ in events()].count("throttled") == 1


def test_each_event_is_also_logged(client, vera, caplog):
    with caplog.at_level(logging.INFO, logger="cryptostock.audit"):
        post_json(client, "/api/v1/auth/token/", {"username": "vera", "password": "wrong"})

    record = next(r for r in caplog.records if getattr(r, "audit", None) == "auth")
    assert (record.kind, record.username, record.via, record.address) == ("login_failed", "vera", "api", "127.0.0.1")
    assert record.getMessage() == "sign-in failed: vera via api from 127.0.0.1"


# --- Changes --------------------------------------------------------------------------------------


def test_a_role_given_in_the_admin_is_recorded_with_the_admin_and_their_address(make_user):
    admin = make_user(ADMIN)
    viewer = make_user(VIEWER)
    client = logged_in(admin)

    client.post(
        "/admin/auth/user/",
        {"action": "make_analyst", "_selected_action": [viewer.pk]},
        REMOTE_ADDR="198.51.100.4",
    )

    entry = changes_of(viewer)[-1]
    assert (entry.actor_id, entry.remote_addr) == (admin.pk, "198.51.100.4")
    assert entry.additional_data == {"via": "POST /admin/auth/user/"}
    groups = entry.changes_dict["groups"]
    assert groups["operation"] == "add"
    assert groups["objects"] == [ANALYST]


def test_a_change_through_the_api_names_the_token_user(make_user, client):
    from rest_framework_simplejwt.tokens import AccessToken

    analyst = make_user(ANALYST)
    exchange = Exchange.objects.create(code="audit-ex", name="Audit")
    instrument = Instrument.objects.create(exchange=exchange, symbol="BTC/USDT", base="BTC", quote="USDT")

    response = post_json(
        client,
        "/api/v1/alerts/rules/",
        {"instrument": instrument.pk, "condition": "crossing_up", "level": 50_000, "channels": ["in_app"]},
        Authorization=f"Bearer {AccessToken.for_user(analyst)}",
    )

    assert response.status_code == 201, response.json()
    created = changes_of(AlertRule.objects.get())
    assert [(e.action, e.actor_id) for e in created] == [(LogEntry.Action.CREATE, analyst.pk)]


def test_secrets_are_recorded_as_changed_never_with_their_values(vera):
    old_hash = vera.password
    vera.set_password("another-long-password")
    vera.save()

    changed = changes_of(vera)[-1].changes_dict
    assert changed["password"] == [HIDDEN, HIDDEN]
    assert old_hash not in str(LogEntry.objects.filter(object_pk=str(vera.pk)).values_list("changes", flat=True))


def test_an_alert_firing_and_a_schedule_run_are_not_recorded_as_changes(make_user):
    from alerts.services import record_firings  # noqa: F401  (the firing path updates by queryset)

    exchange = Exchange.objects.create(code="audit-ex", name="Audit")
    instrument = Instrument.objects.create(exchange=exchange, symbol="ETH/USDT", base="ETH", quote="USDT")
    rule = AlertRule.objects.create(owner=make_user(ANALYST), instrument=instrument, condition="crossing_up", level=1)
    every_minute = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.MINUTES)
    task = PeriodicTask.objects.create(name="audit-test", task="market.tasks.rollup_task", interval=every_minute)
    before = LogEntry.objects.count()

    rule.fire_count += 1
    rule.last_fired_at = timezone.now()
    rule.save()
    task.last_run_at = timezone.now()
    task.total_run_count += 1
    task.save()

    assert LogEntry.objects.count() == before
    task.enabled = False
    task.save()
    assert changes_of(task)[-1].changes_dict["enabled"] == [True, False]


def test_a_command_is_recorded_by_its_name(monkeypatch, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    monkeypatch.setattr(sys, "argv", ["/srv/cryptostock/manage.py", "createuser", "carol"])
    monkeypatch.setattr(sys, "stdin", SimpleNamespace(readline=lambda: PASSWORD + "\n", isatty=lambda: False))

    call_command("createuser", "carol", "--role", "viewer", "--password-stdin")

    carol = get_user_model().objects.get(username="carol")
    entries = changes_of(carol)
    assert entries[0].action == LogEntry.Action.CREATE
    assert {e.actor_id for e in entries} == {None}
    assert {e.additional_data["via"] for e in entries} == {"manage.py createuser"}


def test_the_process_is_named_by_its_program_outside_manage_py(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/celery", "-A", "cryptostock", "worker"])

    assert process_name() == "celery"


def test_changes_are_logged_with_what_changed(make_user, caplog):
    user = make_user(VIEWER)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="cryptostock.audit"):
        set_role(user, ANALYST)

    records = [r for r in caplog.records if getattr(r, "audit", None) == "change"]
    assert [(r.action, r.model, r.object_pk) for r in records] == [("update", "user", str(user.pk))] * 2
    assert records[0].getMessage() == f"update user {user.username} by {process_name()}: ['groups']"


def test_giving_a_role_records_the_role_taken_and_the_role_given_only(make_user):
    user = make_user(VIEWER)
    before = len(changes_of(user))

    set_role(user, ANALYST)
    set_role(user, ANALYST)

    recorded = [e.changes_dict["groups"] for e in changes_of(user)[before:]]
    assert [(g["operation"], g["objects"]) for g in recorded] == [("delete", [VIEWER]), ("add", [ANALYST])]


def test_a_new_object_is_recorded_with_its_own_fields_only(make_user):
    user = make_user()

    created = changes_of(user)[0].changes_dict

    assert created["username"] == [None, user.username]
    assert not {"exports", "alert_rules", "auth_events", "last_login"} & created.keys()


# --- Reading and keeping it -----------------------------------------------------------------------


def test_admins_read_the_trail_in_the_admin_and_nobody_edits_it(make_user):
    admin = make_user(ADMIN)
    client = logged_in(admin)
    Client().post("/accounts/login/", {"username": "nobody", "password": "x"})
    event = AuthEvent.objects.get(username="nobody")
    entry = LogEntry.objects.filter(content_type=ContentType.objects.get_for_model(get_user_model())).first()
    assert entry is not None

    pages = [
        client.get("/admin/accounts/authevent/"),
        client.get("/admin/auditlog/logentry/"),
        client.get(f"/admin/auditlog/logentry/{entry.pk}/change/"),
    ]
    edits = [
        client.post(f"/admin/accounts/authevent/{event.pk}/change/", {"username": "someone"}),
        client.post(f"/admin/accounts/authevent/{event.pk}/delete/", {"post": "yes"}),
        client.get("/admin/accounts/authevent/add/"),
    ]

    assert [p.status_code for p in pages] == [200, 200, 200]
    assert b"nobody" in pages[0].content
    assert [e.status_code for e in edits] == [403, 403, 403]
    assert AuthEvent.objects.filter(pk=event.pk, username="nobody").exists()


def test_analysts_cannot_read_the_trail(make_user):
    client = logged_in(make_user(ANALYST))

    assert client.get("/admin/accounts/authevent/").status_code == 302  # to the admin's login


def test_old_entries_are_pruned_and_zero_days_keeps_everything(make_user):
    now = timezone.now()
    user = make_user(VIEWER)
    old_event = AuthEvent.objects.create(kind="login", via="web", username="old")
    AuthEvent.objects.create(kind="login", via="web", username="new")
    AuthEvent.objects.filter(pk=old_event.pk).update(time=now - timedelta(days=400))
    LogEntry.objects.filter(object_pk=str(user.pk)).update(timestamp=now - timedelta(days=400))
    kept_changes = LogEntry.objects.exclude(object_pk=str(user.pk)).count()

    assert prune_audit_trail(now, 0) == (0, 0)
    events_deleted, changes_deleted = prune_audit_trail(now, 365)

    assert events_deleted == 1
    assert changes_deleted >= 1
    assert list(AuthEvent.objects.values_list("username", flat=True)) == ["new"]
    assert LogEntry.objects.count() == kept_changes
    assert prune_audit_trail(now, 365) == (0, 0)


def test_the_nightly_task_prunes_with_the_configured_days(settings):
    from accounts.tasks import prune_audit_trail_task

    settings.AUDIT_RETENTION_DAYS = 30
    event = AuthEvent.objects.create(kind="login", via="api", username="old")
    AuthEvent.objects.filter(pk=event.pk).update(time=timezone.now() - timedelta(days=31))

    assert prune_audit_trail_task.delay().get() == "1 sign-in event(s) and 0 change record(s) deleted"
    assert "audit-retention" in settings.CELERY_BEAT_SCHEDULE


# --- The API --------------------------------------------------------------------------------------


def test_admins_read_sign_ins_through_the_api_with_filters(make_user, vera):
    Client().post("/accounts/login/", {"username": "vera", "password": "wrong"}, REMOTE_ADDR="203.0.113.9")
    Client().post("/accounts/login/", {"username": "vera", "password": PASSWORD}, REMOTE_ADDR="203.0.113.10")
    admin = logged_in(make_user(ADMIN))

    failed = admin.get("/api/v1/audit/sign-ins/?kind=login_failed").json()
    from_address = admin.get("/api/v1/audit/sign-ins/?address=203.0.113.10").json()
    of_vera = admin.get(f"/api/v1/audit/sign-ins/?user={vera.pk}").json()

    assert [(r["kind"], r["username"], r["address"]) for r in failed["results"]] == [
        ("login_failed", "vera", "203.0.113.9")
    ]
    assert [r["kind"] for r in from_address["results"]] == ["login"]
    assert [r["kind"] for r in of_vera["results"]] == ["login"]


def test_admins_read_changes_through_the_api_newest_first(make_user):
    admin_user = make_user(ADMIN)
    viewer = make_user(VIEWER)
    admin = logged_in(admin_user)
    admin.post("/admin/auth/user/", {"action": "make_analyst", "_selected_action": [viewer.pk]})

    body = admin.get(f"/api/v1/audit/changes/?model=auth.user&object={viewer.pk}&actor={admin_user.pk}").json()

    [added, removed] = body["results"]
    assert (added["action"], added["model"], added["object"], added["actor"]) == (
        "update",
        "auth.user",
        str(viewer.pk),
        admin_user.pk,
    )
    assert added["changes"]["groups"]["objects"] == [ANALYST]
    assert removed["changes"]["groups"]["objects"] == [VIEWER]
    assert added["via"] == "POST /admin/auth/user/"
    created = admin.get(f"/api/v1/audit/changes/?model=auth.user&object={viewer.pk}&action=create").json()
    assert [(r["action"], r["actor"], r["via"]) for r in created["results"]] == [("create", None, process_name())]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("sign-ins/?kind=logged_in", "kind"),
        ("sign-ins/?user=0", "user"),
        ("sign-ins/?address=300.1.2.3", "address"),
        ("sign-ins/?since=yesterday", "since"),
        ("sign-ins/?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", "until"),
        ("changes/?model=user", "model"),
        ("changes/?action=rename", "action"),
        ("changes/?actor=x", "actor"),
    ],
)
def test_a_bad_filter_is_a_400_that_names_it(make_user, query, field):
    response = logged_in(make_user(ADMIN)).get(f"/api/v1/audit/{query}")

    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


def test_sign_in_events_are_counted_on_metrics(client, vera):
    def counted(kind: str) -> float:
        return scrape(Client()).get(("cryptostock_sign_in_events_total", labels(kind=kind, via="api")), 0.0)

    before = counted("login_failed"), counted("login")
    post_json(client, "/api/v1/auth/token/", {"username": "vera", "password": "wrong"})
    post_json(client, "/api/v1/auth/token/", {"username": "vera", "password": "wrong"})
    post_json(client, "/api/v1/auth/token/", {"username": "vera", "password": PASSWORD})

    assert (counted("login_failed") - before[0], counted("login") - before[1]) == (2, 1)

"""The alerts API under /api/v1/alerts/: rules CRUD, firing history and notifications, each user's own."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from accounts.tests.clients import logged_in
from alerts import services
from alerts.models import AlertRule, DeliveryStatus
from alerts.tests.conftest import utc
from market.models import Instrument

pytestmark = pytest.mark.django_db

RULES = "/api/v1/alerts/rules/"


@pytest.fixture
def owner(analyst):
    return logged_in(analyst)


@pytest.fixture
def stranger(make_user):
    return logged_in(make_user("analyst"))


def ema_cross(instrument: Instrument, **extra: object) -> dict[str, object]:
    return {
        "name": "Golden cross",
        "instrument": instrument.pk,
        "timeframe": "1h",
        "condition": "crossing_up",
        "source": {"indicator": "ema", "length": 20},
        "target": {"indicator": "ema", "length": 50},
        "frequency": "once_per_bar_close",
        "cooldown_seconds": 3600,
        "message": "{{ticker}} EMA20 over EMA50 at {{close}}",
        "channels": ["in_app", "webhook"],
        "webhook_url": "https://hooks.example.com/alerts",
        **extra,
    }


def test_an_analyst_creates_a_rule_that_is_theirs(owner, analyst, btc, make_user):
    someone = make_user("analyst")
    response = owner.post(RULES, ema_cross(btc, owner=someone.pk), content_type="application/json")

    assert response.status_code == 201, response.json()
    body = response.json()
    rule = AlertRule.objects.get(pk=body["id"])
    assert rule.owner == analyst
    assert body["description"] == "EMA(20) crossing up EMA(50)"
    assert body["source"] == {"indicator": "ema", "length": 20}
    assert len(body["webhook_secret"]) == 64
    assert (body["fire_count"], body["active"], body["symbol"]) == (0, True, "UNITTEST/BTC")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"message": "{{ticker}} at {{price}}"}, "message"),
        ({"level": 30000}, "level"),
        ({"target": {"indicator": "ema", "length": 1}}, "target"),
        ({"channels": ["in_app", "pager"]}, "channels"),
        ({"webhook_url": ""}, "webhook_url"),
        ({"frequency": "sometimes"}, "frequency"),
        ({"timeframe": "2m"}, "timeframe"),
    ],
)
def test_a_bad_rule_is_refused_with_the_field_named(owner, btc, change, field):
    response = owner.post(RULES, ema_cross(btc, **change), content_type="application/json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert field in error["fields"], error


def test_a_partial_update_is_validated_as_the_whole_rule(owner, btc):
    rule_id = owner.post(RULES, ema_cross(btc), content_type="application/json").json()["id"]

    paused = owner.patch(f"{RULES}{rule_id}/", {"active": False}, content_type="application/json")
    assert paused.status_code == 200
    assert paused.json()["active"] is False
    both = owner.patch(f"{RULES}{rule_id}/", {"level": 1.0}, content_type="application/json")
    assert both.status_code == 400
    assert both.json()["error"]["fields"]["level"] == ["give either a level or a target indicator, not both"]


def price_level(instrument: Instrument, level: float) -> dict[str, object]:
    return {"instrument": instrument.pk, "timeframe": "1m", "condition": "crossing_up", "level": level}


def test_moving_a_price_level_changes_only_the_level(owner, btc):
    # Given a price-level rule, as the chart creates one
    created = owner.post(RULES, price_level(btc, 0.0019) | {"name": "breakout"}, content_type="application/json").json()

    # When its line is dragged to another price
    moved = owner.patch(f"{RULES}{created['id']}/", {"level": 0.00205}, content_type="application/json")

    # Then the rule watches the new level and keeps the rest
    assert moved.status_code == 200, moved.json()
    assert moved.json()["description"] == "close crossing up 0.00205"
    rule = AlertRule.objects.get(pk=created["id"])
    assert (rule.level, rule.condition, rule.name, rule.timeframe) == (0.00205, "crossing_up", "breakout", "1m")


@pytest.mark.parametrize(
    ("level", "message"),
    [
        ("abc", "A valid number is required."),
        ("NaN", "A valid number is required."),
        ("Infinity", "A valid number is required."),
        (None, "give a level or a target indicator to compare with"),
        (0, "a level on the close price must be above 0"),
        (-0.5, "a level on the close price must be above 0"),
    ],
)
def test_it_rejects_a_level_that_is_no_price(owner, btc, level, message):
    rule_id = owner.post(RULES, price_level(btc, 0.0019), content_type="application/json").json()["id"]

    response = owner.patch(f"{RULES}{rule_id}/", {"level": level}, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"]["fields"]["level"] == [message]
    assert AlertRule.objects.get(pk=rule_id).level == 0.0019


def test_an_indicator_level_may_be_below_zero(owner, btc):
    body = price_level(btc, -0.5) | {"source": {"indicator": "macd"}}
    assert owner.post(RULES, body, content_type="application/json").status_code == 201


def test_rules_belong_to_their_owner_only(owner, stranger, btc):
    rule_id = owner.post(RULES, ema_cross(btc), content_type="application/json").json()["id"]

    assert stranger.get(RULES).json()["count"] == 0
    assert stranger.get(f"{RULES}{rule_id}/").status_code == 404
    assert stranger.patch(f"{RULES}{rule_id}/", {"active": False}, content_type="application/json").status_code == 404
    assert stranger.delete(f"{RULES}{rule_id}/").status_code == 404
    assert owner.get(RULES).json()["count"] == 1
    assert owner.delete(f"{RULES}{rule_id}/").status_code == 204


def test_the_rules_list_filters_by_instrument_and_state(owner, btc):
    paused = owner.post(RULES, ema_cross(btc, active=False), content_type="application/json").json()["id"]
    running = owner.post(RULES, ema_cross(btc), content_type="application/json").json()["id"]

    def ids(**filters: object) -> list[int]:
        return sorted(rule["id"] for rule in owner.get(RULES, filters).json()["results"])

    assert ids() == [paused, running]
    assert ids(active="false") == [paused]
    assert ids(active="true", instrument=btc.pk) == [running]
    assert ids(instrument=btc.pk + 1000) == []


@pytest.mark.parametrize(
    ("url", "field"),
    [
        (f"{RULES}?instrument=abc", "instrument"),
        (f"{RULES}?instrument=99999999999999999999999", "instrument"),  # beyond bigint: not a database error
        (f"{RULES}?active=maybe", "active"),
        ("/api/v1/alerts/firings/?rule=-1", "rule"),
        ("/api/v1/alerts/firings/?rule=99999999999999999999999", "rule"),
        ("/api/v1/alerts/notifications/?unread=sometimes", "unread"),
    ],
)
def test_a_bad_list_filter_is_a_400_naming_it(owner, url, field):
    response = owner.get(url)

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == [field]


def test_viewers_and_anonymous_users_cannot_manage_alerts(make_user, btc):
    viewer = logged_in(make_user("viewer"))
    assert viewer.get(RULES).status_code == 403
    assert viewer.post(RULES, ema_cross(btc), content_type="application/json").status_code == 403
    assert Client().get(RULES).status_code == 401


def test_rotating_the_webhook_secret(owner, btc):
    created = owner.post(RULES, ema_cross(btc), content_type="application/json").json()
    rotated = owner.post(f"{RULES}{created['id']}/rotate-secret/").json()
    assert rotated["webhook_secret"] != created["webhook_secret"]
    assert AlertRule.objects.get(pk=created["id"]).webhook_secret == rotated["webhook_secret"]


def test_the_firing_history_shows_each_delivery(owner, stranger, fired):
    body = owner.get("/api/v1/alerts/firings/", {"rule": fired.pk}).json()

    [firing] = body["results"]
    assert (firing["rule"], firing["rule_name"], firing["symbol"], firing["timeframe"]) == (
        fired.pk,
        "Over 0.0019",
        "UNITTEST/BTC",
        "1m",
    )
    assert firing["bar_time"] == "2017-11-06T04:32:00Z"
    assert [(d["channel"], d["status"], d["attempts"]) for d in firing["deliveries"]] == [
        ("in_app", DeliveryStatus.SENT, 1),
        ("email", DeliveryStatus.SENT, 1),
    ]
    assert stranger.get("/api/v1/alerts/firings/").json()["count"] == 0
    assert stranger.get(f"/api/v1/alerts/firings/{firing['id']}/").status_code == 404


def test_notifications_are_listed_and_marked_read(owner, stranger, fired):
    url = "/api/v1/alerts/notifications/"
    [notification] = owner.get(url, {"unread": "1"}).json()["results"]
    assert notification["read"] is False
    assert notification["message"].startswith("UNITTEST/BTC (binance, 1m): close crossing up 0.0019")
    shown = {key: notification[key] for key in ("rule", "rule_name", "symbol", "timeframe", "bar_time", "intrabar")}
    assert shown == {
        "rule": fired.pk,
        "rule_name": "Over 0.0019",
        "symbol": "UNITTEST/BTC",
        "timeframe": "1m",
        "bar_time": "2017-11-06T04:32:00Z",
        "intrabar": False,
    }

    assert stranger.post(f"{url}{notification['id']}/read/").status_code == 404
    assert owner.post(f"{url}{notification['id']}/read/").json()["read"] is True
    assert owner.get(url, {"unread": "1"}).json()["count"] == 0
    assert [n["id"] for n in owner.get(url, {"unread": "false"}).json()["results"]] == [notification["id"]]
    assert owner.post(f"{url}read-all/", {}, content_type="application/json").json() == {"marked_read": 0}


def test_read_all_marks_the_users_unread_notifications_or_only_those_listed(owner, stranger, fired):
    url = "/api/v1/alerts/notifications/"
    for minute in ("04:33", "04:34"):
        services.record_firings([services.Candidate(fired, utc(f"2017-11-06 {minute}"), 0.0019, 0.0019, 1.0)])
    ids = [n["id"] for n in owner.get(url).json()["results"]]  # newest first

    listed = owner.post(f"{url}read-all/", {"ids": ids[:1]}, content_type="application/json")
    assert listed.json() == {"marked_read": 1}
    assert stranger.post(f"{url}read-all/", {}, content_type="application/json").json() == {"marked_read": 0}
    assert owner.post(f"{url}read-all/", {}, content_type="application/json").json() == {"marked_read": 2}
    assert [n["read"] for n in owner.get(url).json()["results"]] == [True, True, True]


def test_the_admin_lists_each_firings_delivery_status(fired, make_user, client):
    from django.contrib.auth import get_user_model

    root = get_user_model().objects.create_superuser("root", "root@example.com", "a-long-test-password")
    client.force_login(root)

    page = client.get(reverse("admin:alerts_alertfiring_changelist")).content.decode()

    assert "in_app sent, email sent" in page

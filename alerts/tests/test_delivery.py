"""Delivery on every channel, against real local HTTP servers speaking each protocol, with retries
through (eager) Celery and every outcome recorded."""

from __future__ import annotations

import json
import time

import pytest
from django.core import mail

from alerts import delivery
from alerts.models import Delivery, DeliveryStatus
from alerts.rules import Condition
from alerts.signing import verify_signature
from alerts.tests.conftest import utc

pytestmark = pytest.mark.django_db

BAR = utc("2017-11-06 04:32")


def only_delivery(firing) -> Delivery:
    [found] = firing.deliveries.all()
    return found


def test_a_webhook_carries_the_firing_as_json_with_a_signature_that_verifies(make_rule, fire, local_server):
    rule = make_rule(
        condition=Condition.CROSSING_UP, level=0.0019, channels=["webhook"], webhook_url=f"{local_server.url}/hook"
    )

    firing = fire(rule)

    [request] = local_server.requests
    headers = {name.lower(): value for name, value in request.headers.items()}
    assert request.path == "/hook"
    assert headers["content-type"] == "application/json"
    assert verify_signature(
        rule.webhook_secret,
        headers["x-cryptostock-timestamp"],
        request.body,
        headers["x-cryptostock-signature"],
        now=int(time.time()),
    )
    assert not verify_signature(
        "another-secret",
        headers["x-cryptostock-timestamp"],
        request.body,
        headers["x-cryptostock-signature"],
        now=int(time.time()),
    )
    body = request.json()
    assert body["id"] == firing.pk
    assert body["rule"] == {
        "id": rule.pk,
        "name": "",
        "condition": "crossing_up",
        "description": "close crossing up 0.0019",
    }
    assert body["instrument"]["symbol"] == "UNITTEST/BTC"
    assert (body["bar_time"], body["close"], body["timeframe"]) == ("2017-11-06T04:32:00Z", 0.00190091, "1m")
    sent = only_delivery(firing)
    assert headers["x-cryptostock-delivery"] == str(sent.pk)
    assert (sent.status, sent.attempts, sent.response_code) == (DeliveryStatus.SENT, 1, 200)


def test_a_500_then_a_200_is_one_successful_delivery_after_one_retry(make_rule, fire, local_server):
    local_server.answers = [(500, {"error": "busy"}), (200, {"ok": True})]
    rule = make_rule(condition=Condition.CROSSING_UP, level=0.0019, channels=["webhook"], webhook_url=local_server.url)

    sent = only_delivery(fire(rule))

    assert len(local_server.requests) == 2
    assert local_server.requests[0].body == local_server.requests[1].body
    assert (sent.status, sent.attempts, sent.response_code, sent.last_error) == (DeliveryStatus.SENT, 2, 200, "")


def test_a_dead_endpoint_ends_as_a_recorded_failure_after_every_retry(make_rule, fire, dead_url, settings):
    rule = make_rule(condition=Condition.CROSSING_UP, level=0.0019, channels=["webhook"], webhook_url=dead_url)

    failed = only_delivery(fire(rule))

    assert failed.status == DeliveryStatus.FAILED
    assert failed.attempts == settings.ALERTS_DELIVERY_MAX_RETRIES + 1 == 3
    assert failed.last_error.startswith(f"could not reach {dead_url}")
    # Nothing left to do: running the task again changes nothing
    assert delivery.attempt_delivery(failed.pk) is delivery.Attempt.SKIPPED


def test_a_client_error_is_not_retried(make_rule, fire, local_server):
    local_server.answers = [(404, {"error": "no such hook"})]
    rule = make_rule(condition=Condition.CROSSING_UP, level=0.0019, channels=["webhook"], webhook_url=local_server.url)

    failed = only_delivery(fire(rule))

    assert len(local_server.requests) == 1
    assert (failed.status, failed.attempts, failed.response_code) == (DeliveryStatus.FAILED, 1, 404)
    assert failed.last_error == 'HTTP 404: {"error": "no such hook"}'


def test_backoff_doubles_from_the_configured_base(settings):
    settings.ALERTS_DELIVERY_BACKOFF_SECONDS = 10
    assert [delivery.backoff_seconds(n) for n in range(4)] == [10, 20, 40, 80]


def test_an_email_goes_to_the_owner(make_rule, fire):
    rule = make_rule(
        condition=Condition.CROSSING_UP,
        level=0.0019,
        channels=["email"],
        name="Breakout",
        message="{{ticker}} broke out at {{close}} ({{time}})",
    )

    sent = only_delivery(fire(rule))

    [email] = mail.outbox
    assert email.to == ["ana@example.com"]
    assert email.subject == "Alert: Breakout on UNITTEST/BTC"
    assert email.body == "UNITTEST/BTC broke out at 0.00190091 (2017-11-06T04:32:00Z)"
    assert sent.status == DeliveryStatus.SENT


def test_telegram_gets_the_message_through_the_bot_api(make_rule, fire, local_server, settings):
    settings.ALERTS_TELEGRAM_API_URL = local_server.url
    settings.ALERTS_TELEGRAM_BOT_TOKEN = "123:abc"
    local_server.answers = [(200, {"ok": True, "result": {"message_id": 1}})]
    rule = make_rule(
        condition=Condition.CROSSING_UP,
        level=0.0019,
        channels=["telegram"],
        telegram_chat_id="-1001",
        message="{{ticker}} up",
    )

    sent = only_delivery(fire(rule))

    [request] = local_server.requests
    assert request.path == "/bot123:abc/sendMessage"
    assert request.json() == {"chat_id": "-1001", "text": "UNITTEST/BTC up"}
    assert sent.status == DeliveryStatus.SENT


def test_slack_gets_the_message_and_its_not_ok_answers_are_failures(make_rule, fire, local_server, settings):
    settings.ALERTS_SLACK_API_URL = f"{local_server.url}/api"
    settings.ALERTS_SLACK_BOT_TOKEN = "xoxb-test"
    rule = make_rule(
        condition=Condition.CROSSING_UP, level=0.0019, channels=["slack"], slack_channel="C123", message="{{ticker}} up"
    )

    sent = only_delivery(fire(rule))
    [request] = local_server.requests
    assert request.path == "/api/chat.postMessage"
    assert request.headers["Authorization"] == "Bearer xoxb-test"
    assert json.loads(request.body) == {"channel": "C123", "text": "UNITTEST/BTC up"}
    assert sent.status == DeliveryStatus.SENT

    # Slack answers HTTP 200 with ok: false when the channel does not exist
    local_server.answers = [(200, {"ok": False, "error": "channel_not_found"})]
    rule.firings.all().delete()
    failed = only_delivery(fire(rule))
    assert (failed.status, failed.last_error) == (DeliveryStatus.FAILED, "Slack answered error 'channel_not_found'")


def test_several_channels_are_delivered_and_recorded_separately(make_rule, fire, dead_url):
    rule = make_rule(
        condition=Condition.CROSSING_UP, level=0.0019, channels=["in_app", "email", "webhook"], webhook_url=dead_url
    )

    firing = fire(rule)

    statuses = dict(firing.deliveries.values_list("channel", "status"))
    assert statuses == {"in_app": "sent", "email": "sent", "webhook": "failed"}

"""Alerts reach public addresses only (no server-side request forgery): refused when a rule is saved,
and again when a delivery is sent, unless ALERTS_WEBHOOK_ALLOW_PRIVATE allows them."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from accounts.tests.clients import logged_in
from alerts import senders
from alerts.destinations import BlockedDestination, destination_error, refusal_for_address
from alerts.models import AlertRule, DeliveryStatus
from alerts.rules import Condition
from alerts.tests.test_api import RULES, ema_cross
from alerts.tests.test_delivery import only_delivery

PUBLIC = "93.184.215.14"


def resolver(*addresses: str):
    return lambda host: list(addresses)


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.9", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),  # the cloud metadata service
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "not a public"),  # carrier-grade NAT
        ("::1", "loopback"),
        ("fe80::1%eth0", "link-local"),
        ("fd00::1", "private"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4 mapped into IPv6
    ],
)
def test_it_refuses_every_kind_of_non_public_address(address, kind):
    reason = refusal_for_address(address)
    assert reason is not None
    assert kind in reason


def test_it_accepts_public_addresses():
    assert refusal_for_address(PUBLIC) is None
    assert refusal_for_address("2606:2800:21f:cb07:6820:80da:af6b:8b2c") is None


def test_a_url_is_judged_by_every_address_its_host_resolves_to():
    assert destination_error("https://hooks.example.com/x", allow_private=False, resolve=resolver(PUBLIC)) is None
    refused = destination_error(
        "https://hooks.example.com/x", allow_private=False, resolve=resolver(PUBLIC, "10.0.0.5")
    )
    assert refused == (
        "hooks.example.com is not allowed: 10.0.0.5 is a private address (alerts only go to public addresses)"
    )


def test_only_http_and_https_are_allowed_even_when_private_addresses_are():
    for url in ("ftp://hooks.example.com/x", "file:///etc/passwd", "gopher://example.com/"):
        assert "only http and https" in (destination_error(url, allow_private=True) or "")
    assert destination_error("http://127.0.0.1:8080/x", allow_private=True) is None
    assert destination_error("http://:80/x", allow_private=True) == "the URL has no host"


def test_a_name_that_does_not_resolve_passes_the_save_time_check():
    def nowhere(host):
        raise OSError("no such host")

    assert destination_error("https://not-yet.example/x", allow_private=False, resolve=nowhere) is None


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/admin/",
        "http://localhost/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://10.0.0.7/hook",
        "ftp://hooks.example.com/alerts",
    ],
)
def test_the_api_refuses_a_webhook_url_that_is_not_public_naming_the_field(make_user, btc, url):
    owner = logged_in(make_user("analyst"))
    response = owner.post(RULES, ema_cross(btc, webhook_url=url), content_type="application/json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert list(error["fields"]) == ["webhook_url"]
    assert error["message"].startswith("webhook_url: ")
    assert AlertRule.objects.count() == 0


@pytest.mark.django_db
def test_a_deployment_may_allow_private_webhook_urls(make_user, btc, settings):
    settings.ALERTS_WEBHOOK_ALLOW_PRIVATE = True
    owner = logged_in(make_user("analyst"))
    response = owner.post(RULES, ema_cross(btc, webhook_url="http://10.0.0.7/hook"), content_type="application/json")
    assert response.status_code == 201, response.json()


@pytest.mark.django_db
def test_a_delivery_to_an_address_no_longer_allowed_fails_for_good_and_sends_nothing(
    make_rule,
    fire,
    local_server,
    settings,
):
    # Given a rule saved while private addresses were allowed, pointing at a local receiver
    rule = make_rule(condition=Condition.CROSSING_UP, level=0.0019, channels=["webhook"], webhook_url=local_server.url)
    # When the deployment stops allowing them (or the name now resolves to a private address)
    settings.ALERTS_WEBHOOK_ALLOW_PRIVATE = False
    delivery = only_delivery(fire(rule))

    # Then the delivery is a recorded failure after one attempt, and the receiver got nothing
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.FAILED, 1)
    assert "127.0.0.1 is a loopback address" in delivery.last_error
    assert local_server.requests == []


def test_the_address_connected_to_is_checked_before_anything_is_sent(local_server):
    # A name can resolve to a public address for the check and a private one for the connection
    # (DNS rebinding): the connection itself refuses the private peer.
    request = urllib.request.Request(f"{local_server.url}/hook", data=b"{}", method="POST")
    with pytest.raises(urllib.error.URLError) as raised:
        senders._public_opener.open(request, timeout=5)

    assert isinstance(raised.value.reason, BlockedDestination)
    assert local_server.requests == []
    with pytest.raises(senders.DeliveryError) as refused:
        senders.post_json(f"{local_server.url}/hook", b"{}", headers={}, timeout=5)
    assert refused.value.retryable is False

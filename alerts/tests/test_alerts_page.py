"""The Alerts page at /alerts/: analysts see their own rules, firings with delivery status, and
notifications; others are refused."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.tests.clients import logged_in

pytestmark = pytest.mark.django_db


def test_it_sends_anonymous_visitors_to_the_login_page():
    response = Client().get("/alerts/")

    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/alerts/"


def test_a_viewer_gets_the_403_page(make_user):
    response = logged_in(make_user("viewer")).get("/alerts/")

    assert response.status_code == 403
    assert b"Your role does not give access to this page" in response.content


def test_the_owner_sees_rules_firings_with_delivery_status_and_notifications(analyst, fired):
    response = logged_in(analyst).get("/alerts/")

    assert response.status_code == 200
    page = response.content.decode()
    assert f'data-rule="{fired.pk}"' in page
    assert "Over 0.0019" in page
    assert "In-app: sent" in page
    assert "Email: sent" in page
    assert "1 unread" in page
    assert "2017-11-06 04:32" in page
    # The form offers every condition and channel the API takes.
    assert 'value="volume_spike"' in page
    assert 'name="channels" value="webhook"' in page
    assert 'name="finding_kinds" value="gap"' in page


def test_another_users_rules_and_notifications_are_not_shown(make_user, fired):
    response = logged_in(make_user("analyst")).get("/alerts/")

    page = response.content.decode()
    assert response.status_code == 200
    assert "Over 0.0019" not in page
    assert "0 unread" in page
    assert "No rules yet" in page


def test_a_paused_rule_offers_resume(analyst, make_rule):
    rule = make_rule(condition="greater_than", level=1.0, active=False, name="Paused one")

    page = logged_in(analyst).get("/alerts/").content.decode()

    assert f'data-rule="{rule.pk}"' in page
    assert 'data-toggle-active="true"' in page
    assert ">paused<" in page

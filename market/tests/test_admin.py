"""Every model registered in the admin has working list, search and add pages; bars, which the
admin cannot register (composite primary key), have their own pages on the same site
(market/tests/test_admin_bars.py) and their entry in the index."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.urls import reverse

from market.barstore import BarRow
from market.services import store_bars

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "a-long-test-password")
    client.force_login(user)
    return client


def registered_models() -> list[Any]:
    return sorted(admin.site._registry, key=lambda model: model._meta.label)


def test_the_market_models_are_registered():
    labels = {model._meta.label for model in registered_models()}
    assert {"market.Exchange", "market.Instrument", "market.CollectorStatus"} <= labels


@pytest.mark.parametrize("model", registered_models(), ids=lambda model: model._meta.label)
def test_each_admin_changelist_and_search_page_renders(admin_client, model, instrument):
    opts = model._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    assert admin_client.get(url).status_code == 200
    assert admin_client.get(url, {"q": "XRP"}).status_code == 200


@pytest.mark.parametrize("url", ["/admin/", "/admin/market/"])
def test_the_index_and_the_market_page_list_bars_with_their_links(admin_client, url):
    page = admin_client.get(url)

    assert page.status_code == 200
    market = next(app for app in page.context["app_list"] if app["app_label"] == "market")
    bars = next(model for model in market["models"] if model["object_name"] == "Bar")
    assert bars["name"] == "Bars"
    assert bars["admin_url"] == reverse("admin:market_bar_changelist") == "/admin/market/bar/"
    assert bars["add_url"] == reverse("admin:market_bar_add")
    names = [model["name"] for model in market["models"]]
    assert names == sorted(names)
    assert b'href="/admin/market/bar/"' in page.content


def test_the_other_apps_pages_leave_bars_out(admin_client):
    page = admin_client.get("/admin/auth/")

    assert [app["app_label"] for app in page.context["app_list"]] == ["auth"]


def test_the_bar_changelist_lists_stored_bars(admin_client, instrument):
    store_bars([BarRow(instrument.pk, "1m", datetime(2019, 10, 11, tzinfo=UTC), 1, 2, 0.5, 1.5, 10, 3, 1.2, True)])
    page = admin_client.get(reverse("admin:market_bar_changelist"))
    assert b"XRP/ETH on binance" in page.content

"""Every model registered in the admin has working list, search and add pages."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.urls import reverse

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
    assert {"market.Exchange", "market.Instrument", "market.Bar"} <= labels


@pytest.mark.parametrize("model", registered_models(), ids=lambda model: model._meta.label)
def test_each_admin_changelist_and_search_page_renders(admin_client, model, instrument):
    opts = model._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    assert admin_client.get(url).status_code == 200
    assert admin_client.get(url, {"q": "XRP"}).status_code == 200


def test_the_bar_changelist_lists_stored_bars(admin_client, instrument):
    from datetime import UTC, datetime

    from market.barstore import BarRow
    from market.services import store_bars

    store_bars([BarRow(instrument.pk, "1m", datetime(2019, 10, 11, tzinfo=UTC), 1, 2, 0.5, 1.5, 10, 3, 1.2, True)])
    page = admin_client.get(reverse("admin:market_bar_changelist"))
    assert b"XRP/ETH on binance" in page.content

"""The admin's backtest pages: listed with their outcome, filterable, never added by hand."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from accounts.tests.clients import logged_in
from backtest import services
from backtest.engine import Costs

pytestmark = pytest.mark.django_db


def test_a_superuser_sees_backtests_with_their_return_and_trades(btc, analyst):
    spec = services.RunSpec(btc, "1m", None, None, "buy_and_hold", {}, Costs(10_000.0, 0.0, 0.0))
    backtest = services.create_backtest(analyst.pk, spec, queue=False)
    services.run_backtest(backtest.pk)
    backtest.refresh_from_db()
    assert backtest.metrics is not None
    admin = logged_in(get_user_model().objects.create_superuser("root"))

    listing = admin.get("/admin/backtest/backtest/?status__exact=done")

    assert listing.status_code == 200
    assert f"{backtest.metrics['total_return']:.2%}" in listing.content.decode()
    assert admin.get(f"/admin/backtest/backtest/{backtest.pk}/change/").status_code == 200
    assert admin.get("/admin/backtest/backtest/add/").status_code == 403

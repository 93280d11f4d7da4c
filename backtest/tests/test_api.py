"""The backtests API under /api/v1/backtests/: create and queue, status, result, list, delete,
strategies; each user's own only; bad input answered 400 naming the field."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from accounts.tests.clients import logged_in
from backtest.models import Backtest, BacktestResult, Status
from backtest.tests.conftest import btc_bars

pytestmark = pytest.mark.django_db

BACKTESTS = "/api/v1/backtests/"


@pytest.fixture
def owner(analyst) -> Client:
    return logged_in(analyst)


def sma_body(btc: Any, **extra: Any) -> dict[str, Any]:
    return {
        "instrument": btc.pk,
        "timeframe": "1m",
        "strategy": "sma_cross",
        "parameters": {"fast": 10, "slow": 30},
        "fee_bps": 10,
        "slippage_bps": 5,
        **extra,
    }


def create(client: Client, body: dict[str, Any], django_capture_on_commit_callbacks: Any) -> Any:
    with django_capture_on_commit_callbacks(execute=True):
        return client.post(BACKTESTS, body, content_type="application/json")


def test_an_analyst_creates_a_backtest_that_runs_and_reports_its_metrics(
    owner, analyst, btc, django_capture_on_commit_callbacks
):
    response = create(owner, sma_body(btc), django_capture_on_commit_callbacks)

    assert response.status_code == 201, response.content
    created = response.json()
    assert created["status"] == "pending"  # as created; the run starts once the transaction commits
    assert created["url"] == f"{BACKTESTS}{created['id']}/"
    status = owner.get(created["url"]).json()
    assert status["status"] == "done"
    assert status["bars_used"] == 2000
    assert status["parameters"] == {"fast": 10, "slow": 30}
    assert status["metrics"]["trades"] > 0
    assert Backtest.objects.get().owner == analyst


def test_the_result_has_every_trade_and_a_downsampled_equity_curve(owner, btc, django_capture_on_commit_callbacks):
    created = create(owner, sma_body(btc), django_capture_on_commit_callbacks).json()

    result = owner.get(f"{created['result_url']}?points=100").json()
    full = owner.get(f"{created['result_url']}?points=0").json()

    assert len(result["trades"]) == result["metrics"]["trades"]
    assert set(result["trades"][0]) == {
        "entry_time",
        "exit_time",
        "entry_price",
        "exit_price",
        "quantity",
        "pnl",
        "return",
        "fees",
        "bars_held",
        "closed_at_end",
    }
    assert result["equity"]["points"] == 100
    assert result["equity"]["bars"] == 2000
    assert len(full["equity"]["equity"]) == 2000
    assert full["equity"]["time"][0] == int(btc_bars(1).time[0])
    assert full["equity"]["equity"][-1] == pytest.approx(result["metrics"]["final_equity"])
    assert result["equity"]["equity"][-1] == full["equity"]["equity"][-1]


def test_the_result_of_a_backtest_not_yet_run_is_a_conflict(owner, btc):
    created = owner.post(BACKTESTS, sma_body(btc), content_type="application/json").json()  # not committed: not run

    response = owner.get(created["result_url"])

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "not_ready"
    assert "pending" in response.json()["error"]["message"]


def test_a_failed_backtest_says_why_and_its_result_is_a_conflict(owner, btc, django_capture_on_commit_callbacks):
    created = owner.post(BACKTESTS, sma_body(btc), content_type="application/json").json()
    # The bars go away before the run: the run fails with a reason instead of crashing.
    from market.models import Bar

    Bar.objects.filter(instrument=btc).delete()
    from backtest.services import run_backtest

    assert run_backtest(created["id"]) == Status.FAILED

    status = owner.get(created["url"]).json()
    assert status["status"] == "failed"
    assert "no bars of UNITTEST/BTC 1m in the range" in status["error"]
    response = owner.get(created["result_url"])
    assert response.status_code == 409
    assert "the backtest failed: no bars" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"strategy": "martingale"}, "strategy", "is not a valid choice"),
        ({"parameters": {"fast": 30, "slow": 10}}, "parameters", "fast: must be less than slow"),
        ({"parameters": {"fast": "ten"}}, "parameters", "fast: must be an integer"),
        ({"parameters": {"slow": 0}}, "parameters", "slow: must be between 2 and 10000"),
        ({"parameters": {"speed": 3}}, "parameters", "speed: sma_cross has no parameter 'speed'"),
        ({"fee_bps": -1}, "fee_bps", "greater than or equal to 0"),
        ({"initial_cash": 0}, "initial_cash", "greater than or equal to 0.01"),
        ({"timeframe": "2m"}, "timeframe", "is not a valid choice"),
        ({"start": "2017-11-05T00:00:00Z", "end": "2017-11-04T00:00:00Z"}, "end", "end must be after start"),
        ({"start": "2030-01-01T00:00:00Z"}, "timeframe", "fewer than 31 final bars"),
        ({"instrument": 999999}, "instrument", "does not exist"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(owner, btc, change, field, message):
    response = owner.post(BACKTESTS, sma_body(btc, **change), content_type="application/json")

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert field in error["fields"]
    assert message in error["message"]
    assert not Backtest.objects.exists()


def test_users_see_only_their_own_backtests(owner, btc, make_user, django_capture_on_commit_callbacks):
    created = create(owner, sma_body(btc), django_capture_on_commit_callbacks).json()
    stranger = logged_in(make_user("analyst"))

    assert stranger.get(created["url"]).status_code == 404
    assert stranger.get(created["result_url"]).status_code == 404
    assert stranger.delete(created["url"]).status_code == 404
    assert stranger.get(BACKTESTS).json()["count"] == 0
    assert owner.get(BACKTESTS).json()["count"] == 1


def test_the_list_filters_by_status_instrument_and_strategy(owner, btc, django_capture_on_commit_callbacks):
    create(owner, sma_body(btc), django_capture_on_commit_callbacks)
    owner.post(BACKTESTS, sma_body(btc, strategy="buy_and_hold", parameters={}), content_type="application/json")

    def ids(query: str) -> list[str]:
        response = owner.get(f"{BACKTESTS}?{query}")
        assert response.status_code == 200, response.content
        return [item["strategy"] for item in response.json()["results"]]

    assert ids("") == ["buy_and_hold", "sma_cross"]  # newest first
    assert ids("status=done") == ["sma_cross"]
    assert ids("status=pending&strategy=buy_and_hold") == ["buy_and_hold"]
    assert ids(f"instrument={btc.pk + 1}") == []
    assert owner.get(f"{BACKTESTS}?status=finished").json()["error"]["fields"].keys() == {"status"}


def test_deleting_a_backtest_deletes_its_result(owner, btc, django_capture_on_commit_callbacks):
    created = create(owner, sma_body(btc), django_capture_on_commit_callbacks).json()

    assert owner.delete(created["url"]).status_code == 204
    assert not Backtest.objects.exists()
    assert not BacktestResult.objects.exists()


def test_the_strategies_are_listed_with_their_parameters(owner):
    response = owner.get(f"{BACKTESTS}strategies/")

    assert response.status_code == 200
    strategies = {item["name"]: item for item in response.json()}
    assert set(strategies) == {"sma_cross", "ema_cross", "rsi_reversion", "bollinger_reversion", "buy_and_hold"}
    fast = strategies["sma_cross"]["params"][0]
    assert fast == {
        "name": "fast",
        "type": "int",
        "default": 10,
        "min": 2,
        "max": 10000,
        "description": fast["description"],
    }


def test_a_viewer_may_not_backtest(viewer_client, btc):
    assert viewer_client.get(BACKTESTS).status_code == 403
    assert viewer_client.post(BACKTESTS, sma_body(btc), content_type="application/json").status_code == 403


def test_an_equity_curve_of_one_point_is_refused(owner, btc, django_capture_on_commit_callbacks):
    created = create(owner, sma_body(btc), django_capture_on_commit_callbacks).json()

    response = owner.get(f"{created['result_url']}?points=1")

    assert response.status_code == 400
    assert response.json()["error"]["fields"].keys() == {"points"}


def test_an_unexpected_error_in_a_run_fails_the_backtest_not_the_request(
    owner, btc, monkeypatch, django_capture_on_commit_callbacks
):
    from backtest import services

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(services, "run_engine", broken)

    response = create(owner, sma_body(btc), django_capture_on_commit_callbacks)

    assert response.status_code == 201
    status = owner.get(response.json()["url"]).json()
    assert status["status"] == "failed"
    assert status["error"] == "an unexpected error stopped the backtest; it is logged on the server"

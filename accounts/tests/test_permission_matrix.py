"""Every URL of the URL conf, as every role, answers the status docs/api.md documents for it.

The table in docs/api.md ("Who may call what") is the specification: this test reads it, makes
each request as anonymous, viewer, analyst and admin (and, for user-owned objects, as an analyst
asking for another user's object), and compares. A URL without a row, or an API endpoint method
without one, fails `test_every_url_has_a_row` / `test_every_api_method_has_a_row`.

To add an endpoint: add its row to docs/api.md; if its path has a new `{placeholder}`, teach
OBJECTS how to make one; if it takes a body, add it to BODIES.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from rest_framework_simplejwt.tokens import RefreshToken

from market.models import Exchange, Instrument

DOCS = Path(__file__).resolve().parents[2] / "docs" / "api.md"
ROLES = ("anonymous", "viewer", "analyst", "admin", "other")
ROW = re.compile(r"^\|\s*(GET|POST|PUT|PATCH|DELETE)\s*\|\s*`([^`]+)`\s*\|(.+)\|\s*$")
PLACEHOLDER = re.compile(r"\{(\w+)\}")
PASSWORD = "correct-horse-battery-staple"
# Django's admin has a URL per model and action, all checked by Django; its index row stands for them.
COVERED_BY_ONE_ROW = ("admin/",)


@dataclass(frozen=True)
class Row:
    method: str
    path: str
    expected: dict[str, int]

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def documented_rows() -> list[Row]:
    rows = []
    for line in DOCS.read_text().splitlines():
        if match := ROW.match(line):
            method, path, cells = match.groups()
            statuses = [cell.strip() for cell in cells.split("|")]
            expected = {role: int(status) for role, status in zip(ROLES, statuses, strict=True) if status}
            rows.append(Row(method, path, expected))
    return rows


ROWS = documented_rows()


def walk(patterns: list[Any], prefix: str = "") -> Iterator[tuple[str, URLPattern]]:
    """(route, pattern) of every URL, routes joined as Django's ResolverMatch.route joins them."""
    for pattern in patterns:
        part = str(pattern.pattern)
        route = prefix + (part[1:] if prefix and part.startswith("^") else part)
        if isinstance(pattern, URLResolver):
            yield from walk(pattern.url_patterns, route)
        else:
            yield route, pattern


def url_routes() -> dict[str, URLPattern]:
    return {
        route: pattern
        for route, pattern in walk(get_resolver().url_patterns)
        if not route.startswith(COVERED_BY_ONE_ROW) or route in COVERED_BY_ONE_ROW
    }


def route_of(path: str) -> str:
    return resolve(PLACEHOLDER.sub("1", urlsplit(path).path)).route


def api_methods(pattern: URLPattern) -> set[str]:
    callback = pattern.callback
    if actions := getattr(callback, "actions", None):
        return {method.upper() for method in actions if method != "head"}
    view_class = getattr(callback, "view_class", None) or getattr(callback, "cls", None)
    if view_class is None:
        return set()
    return {m.upper() for m in view_class.http_method_names if m not in ("options", "head") and hasattr(view_class, m)}


def test_the_table_has_rows():
    assert len(ROWS) > 20


def test_no_method_and_path_has_two_rows():
    seen = [str(row) for row in ROWS]
    assert sorted({row for row in seen if seen.count(row) > 1}) == []


def test_every_url_has_a_row():
    documented = {route_of(row.path) for row in ROWS}
    assert set(url_routes()) - documented == set(), "add a row to docs/api.md for these URLs"
    assert documented - set(url_routes()) == set(), "docs/api.md has rows for URLs that do not exist"


def test_every_api_method_has_a_row():
    documented: dict[str, set[str]] = {}
    for row in ROWS:
        documented.setdefault(route_of(row.path), set()).add(row.method)
    for route, pattern in url_routes().items():
        if route.startswith("api/<str:version>/"):
            assert api_methods(pattern) == documented.get(route, set()), f"methods of {route}"


# --- The world each request runs in --------------------------------------------------------------


@dataclass
class World:
    exchange: Exchange
    instrument: Instrument
    user: Any  # who makes the request (None: anonymous)
    owner: Any  # who owns the user-owned objects the path names
    login: Any  # a user with a known password, for the token and login endpoints
    counter: Iterator[int]


def _token(world: World) -> int:
    from rest_framework_simplejwt.token_blacklist.models import OutstandingToken

    return OutstandingToken.objects.get(jti=RefreshToken.for_user(world.owner)["jti"]).pk


def _alert_rule(world: World) -> Any:
    from alerts.models import AlertRule

    return AlertRule.objects.create(owner=world.owner, instrument=world.instrument, condition="greater_than", level=1)


def _alert_firing(world: World) -> Any:
    from alerts.models import AlertFiring

    return AlertFiring.objects.create(rule=_alert_rule(world), bar_time=datetime(2024, 1, 1, tzinfo=UTC), payload={})


def _notification(world: World) -> int:
    from alerts.models import Notification

    return Notification.objects.create(user=world.owner, firing=_alert_firing(world), message="fired").pk


def _collector(world: World) -> str:
    from django.utils import timezone

    from market.models import CollectorStatus

    now = timezone.now()
    return CollectorStatus.objects.create(name="binance", source="binance", started_at=now, updated_at=now).name


def _watched(world: World) -> int:
    from market.watchlist import add_to_watchlist

    add_to_watchlist(world.owner.pk, world.instrument.pk)
    return world.instrument.pk


def _backtest(world: World) -> int:
    """A finished backtest with its (tiny) result, so that the result endpoint answers 200."""
    from backtest.models import Backtest, BacktestResult

    backtest = Backtest.objects.create(
        owner=world.owner, instrument=world.instrument, timeframe="1m", strategy="buy_and_hold", status="done"
    )
    BacktestResult.objects.create(backtest=backtest, trades=[], equity_time=b"", equity_value=b"")
    return backtest.pk


def _export(world: World) -> int:
    """A done export (its file written), so that its download answers 200."""
    from django.utils import timezone

    from exports.services import create_export, run_export

    export = create_export(world.owner, world.instrument, "1m", None, None, "csv", now=timezone.now())
    run_export(export.pk)
    return export.pk


def _opportunity(world: World) -> int:
    from market.models import ArbitrageOpportunity

    moment = datetime(2024, 1, 1, tzinfo=UTC)
    legs = ("buy_instrument", "sell_instrument", "max_buy_instrument", "max_sell_instrument")
    prices = dict.fromkeys(("buy_price", "sell_price", "buy_price_at_max", "sell_price_at_max"), 1.0)
    spreads = dict.fromkeys(("first_net_bps", "last_net_bps", "last_gross_bps", "max_net_bps", "max_gross_bps"), 10.0)
    return ArbitrageOpportunity.objects.create(
        base="XRP",
        quote="ETH",
        symbol="XRP/ETH",
        opened_at=moment,
        last_seen_at=moment,
        max_at=moment,
        **dict.fromkeys(legs, world.instrument),
        **prices,
        **spreads,
    ).pk


def _backfill(world: World) -> int:
    from market.models import BackfillJob, BackfillStatus

    start, end = datetime(2019, 10, 11, tzinfo=UTC), datetime(2019, 10, 12, tzinfo=UTC)
    return BackfillJob.objects.create(
        source="binance", instrument=world.instrument, timeframe="1m", start=start, end=end, cursor=start,
        status=BackfillStatus.FAILED, error="interrupted; run it again to resume",
    ).pk  # fmt: skip


def _backfill_body(world: World) -> dict[str, Any]:
    return {"instrument": world.instrument.pk, "start": "2019-10-11T00:00:00Z", "end": "2019-10-12T00:00:00Z"}


OBJECTS: dict[str, Callable[[World], Any]] = {
    "backfill": _backfill,
    "opportunity": _opportunity,
    "collector": _collector,
    "exchange": lambda world: world.exchange.pk,
    "instrument": lambda world: world.instrument.pk,
    "token": _token,
    "rule": lambda world: _alert_rule(world).pk,
    "firing": lambda world: _alert_firing(world).pk,
    "notification": _notification,
    "watched": _watched,
    "backtest": _backtest,
    "export": _export,
}


def _refresh(world: World) -> dict[str, str]:
    return {"refresh": str(RefreshToken.for_user(world.login))}


def _exchange_body(world: World) -> dict[str, Any]:
    return {"code": f"venue{next(world.counter)}", "name": "A venue", "timezone": "UTC"}


def _instrument_body(world: World) -> dict[str, Any]:
    return {"exchange": world.exchange.code, "symbol": f"COIN{next(world.counter)}/USDT"}


def _rule_body(world: World) -> dict[str, Any]:
    return {"instrument": world.instrument.pk, "condition": "greater_than", "level": 2.5}


def _backtest_body(world: World) -> dict[str, Any]:
    """Two bars: what buy-and-hold needs (a signal and a next bar to fill it), checked at create time."""
    from market.barstore import BarRow
    from market.services import store_bars

    start = datetime(2024, 1, 1, tzinfo=UTC)
    bars = [
        BarRow(world.instrument.pk, "1h", start.replace(hour=h), 1.0, 1.0, 1.0, 1.0, 1.0, None, None, True)
        for h in (0, 1)
    ]
    store_bars(bars, publish=False)
    return {"instrument": world.instrument.pk, "timeframe": "1h", "strategy": "buy_and_hold"}


BODIES: dict[str, Callable[[World], dict[str, Any]]] = {
    "POST /accounts/login/": lambda world: {"username": "nobody", "password": "wrong"},
    "POST /api/v1/auth/token/": lambda world: {"username": world.login.username, "password": PASSWORD},
    "POST /api/v1/auth/token/refresh/": _refresh,
    "POST /api/v1/auth/token/verify/": lambda world: {"token": str(RefreshToken.for_user(world.login).access_token)},
    "POST /api/v1/auth/logout/": _refresh,
    "POST /api/v1/exchanges/": _exchange_body,
    "PUT /api/v1/exchanges/{exchange}/": _exchange_body,
    "PATCH /api/v1/exchanges/{exchange}/": lambda world: {"name": "Renamed"},
    "POST /api/v1/instruments/": _instrument_body,
    "PUT /api/v1/instruments/{instrument}/": _instrument_body,
    "PATCH /api/v1/instruments/{instrument}/": lambda world: {"name": "Renamed"},
    "POST /api/v1/alerts/rules/": _rule_body,
    "PUT /api/v1/alerts/rules/{rule}/": _rule_body,
    "PATCH /api/v1/alerts/rules/{rule}/": lambda world: {"name": "Renamed"},
    "POST /api/v1/alerts/notifications/read-all/": lambda world: {},
    "POST /api/v1/watchlist/": lambda world: {"instrument": world.instrument.pk},
    "POST /api/v1/watchlist/reorder/": lambda world: {"instruments": []},
    "POST /api/v1/backtests/": _backtest_body,
    "POST /api/v1/exports/": lambda world: {"instrument": world.instrument.pk, "format": "parquet"},
    "POST /api/v1/backfills/": _backfill_body,
}


@pytest.fixture
def world(db, settings, make_user) -> Callable[[str], World]:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast; hashing is not tested here
    exchange = Exchange.objects.create(code="binance", name="Binance")
    instrument = Instrument.objects.create(exchange=exchange, symbol="XRP/ETH")
    login = get_user_model().objects.create_user("login", password=PASSWORD)

    def build(role: str) -> World:
        user = None if role == "anonymous" else make_user("analyst" if role == "other" else role)
        owner = make_user("analyst") if role in ("other", "anonymous") else user
        return World(exchange, instrument, user, owner, login, iter(range(1, 1000)))

    return build


def cases() -> list[Any]:
    return [
        pytest.param(row, role, status, id=f"{row} as {role}") for row in ROWS for role, status in row.expected.items()
    ]


@pytest.mark.parametrize(("row", "role", "status"), cases())
def test_each_role_gets_the_documented_status(world, row, role, status):
    given = world(role)
    path = PLACEHOLDER.sub(lambda match: str(OBJECTS[match.group(1)](given)), row.path)
    client = Client()
    headers = {}
    if given.user is not None:
        client.force_login(given.user)  # pages use the session
        headers["Authorization"] = f"Bearer {RefreshToken.for_user(given.user).access_token}"  # the API a token
    body = BODIES.get(str(row), lambda world: None)(given)
    if path.startswith("/api/") and body is not None:
        response = client.generic(row.method, path, _json(body), content_type="application/json", headers=headers)
    elif row.method == "POST":
        response = client.post(path, body or {}, headers=headers)
    else:
        response = client.generic(row.method, path, headers=headers)

    assert response.status_code == status, response.content[:500]


def _json(body: dict[str, Any]) -> str:
    import json

    return json.dumps(body)

"""The watchlist API: /api/v1/watchlist/ to read and add, reorder/ and <instrument>/ to remove."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from market.models import Instrument, WatchlistEntry
from market.watchlist import MAX_WATCHLIST

pytestmark = pytest.mark.django_db

URL = "/api/v1/watchlist/"


@pytest.fixture
def viewer(make_user):
    client = Client()
    client.force_login(make_user("viewer"))
    return client


@pytest.fixture
def coins(exchange):
    return [Instrument.objects.create(exchange=exchange, symbol=f"C{n}/USDT") for n in range(3)]


def symbols(body: dict[str, Any]) -> list[str]:
    return [item["symbol"] for item in body["instruments"]]


def post(client: Client, url: str, body: dict[str, Any]) -> Any:
    return client.post(url, body, content_type="application/json")


def test_an_empty_watchlist_reads_as_the_active_instruments(viewer, coins):
    coins[2].active = False
    coins[2].save()

    body = viewer.get(URL).json()

    assert body["default"] is True
    assert symbols(body) == ["C0/USDT", "C1/USDT"]


def test_adding_puts_instruments_at_the_end_and_adding_twice_changes_nothing(viewer, coins):
    assert post(viewer, URL, {"instrument": coins[1].pk}).status_code == 201
    added = post(viewer, URL, {"instrument": coins[0].pk})
    again = post(viewer, URL, {"instrument": coins[1].pk})

    assert added.status_code == 201
    assert again.status_code == 200
    assert again.json() == {"default": False, "instruments": added.json()["instruments"]}
    assert symbols(again.json()) == ["C1/USDT", "C0/USDT"]


def test_reordering_needs_every_instrument_exactly_once(viewer, coins):
    for coin in coins:
        post(viewer, URL, {"instrument": coin.pk})

    reordered = post(viewer, f"{URL}reorder/", {"instruments": [coins[2].pk, coins[0].pk, coins[1].pk]})
    missing = post(viewer, f"{URL}reorder/", {"instruments": [coins[0].pk, coins[1].pk]})
    twice = post(viewer, f"{URL}reorder/", {"instruments": [coins[0].pk, coins[0].pk, coins[1].pk]})

    assert symbols(reordered.json()) == ["C2/USDT", "C0/USDT", "C1/USDT"]
    assert missing.status_code == 400
    assert missing.json()["error"]["fields"] == {
        "instruments": [f"give every instrument of the watchlist exactly once (missing {coins[2].pk})"]
    }
    assert twice.json()["error"]["fields"]["instruments"] == ["an instrument appears more than once"]
    assert symbols(viewer.get(URL).json()) == ["C2/USDT", "C0/USDT", "C1/USDT"]


def test_removing_an_instrument_not_on_the_list_is_a_404(viewer, coins):
    post(viewer, URL, {"instrument": coins[0].pk})

    assert viewer.delete(f"{URL}{coins[0].pk}/").status_code == 204
    assert viewer.delete(f"{URL}{coins[0].pk}/").status_code == 404
    assert viewer.delete(f"{URL}{2**70}/").status_code == 404  # past any database integer
    assert viewer.get(URL).json()["default"] is True


def test_each_user_has_their_own_list(viewer, make_user, coins):
    post(viewer, URL, {"instrument": coins[0].pk})
    other = Client()
    other.force_login(make_user("viewer"))

    assert other.get(URL).json()["default"] is True
    assert other.delete(f"{URL}{coins[0].pk}/").status_code == 404
    assert WatchlistEntry.objects.count() == 1


def test_bad_input_is_refused_with_the_field_named(viewer, coins):
    unknown = post(viewer, URL, {"instrument": 999_999})
    not_a_list = post(viewer, f"{URL}reorder/", {"instruments": "1,2"})

    assert unknown.status_code == 400
    assert list(unknown.json()["error"]["fields"]) == ["instrument"]
    assert list(not_a_list.json()["error"]["fields"]) == ["instruments"]


def test_a_watchlist_has_a_size_limit(viewer, exchange, settings):
    instruments = Instrument.objects.bulk_create(
        Instrument(exchange=exchange, symbol=f"X{n}/USDT") for n in range(MAX_WATCHLIST + 1)
    )
    for instrument in instruments[:MAX_WATCHLIST]:
        post(viewer, URL, {"instrument": instrument.pk})

    refused = post(viewer, URL, {"instrument": instruments[-1].pk})

    assert refused.status_code == 400
    assert refused.json()["error"]["fields"]["instrument"] == [f"a watchlist holds at most {MAX_WATCHLIST} instruments"]


def test_anonymous_users_and_users_without_a_role_are_refused(make_user, settings):
    settings.PUBLIC_MARKET_DATA = True  # the watchlist is per user: never public
    no_role = Client()
    no_role.force_login(make_user())

    assert Client().get(URL).status_code == 401
    assert no_role.get(URL).status_code == 403

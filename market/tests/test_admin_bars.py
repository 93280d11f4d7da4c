"""The admin's bar pages (market/admin_bars.py): list with filters and keyset paging, add, change and
delete through the bar services, Django's bar permissions, LogEntry rows, 404 for bad keys."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.admin.utils import quote
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.tests.clients import logged_in
from market.admin_bar_queries import BarFilters, BarPrimaryKey, newest_bars, newest_bars_plain
from market.barstore import BarRow
from market.models import Bar, Exchange, Instrument, PendingRollup
from market.services import delete_bars, store_bars

pytestmark = pytest.mark.django_db

START = datetime(2024, 3, 1, tzinfo=UTC)
LIST = "/admin/market/bar/"


def row(instrument, minute: int, timeframe: str = "1m", close: float = 10.5, final: bool = True) -> BarRow:
    time = START + timedelta(minutes=minute)
    return BarRow(instrument.pk, timeframe, time, 10.0, 11.0, 9.0, close, 1.0, 3, None, final)


def key(instrument, minute: int, timeframe: str = "1m") -> BarPrimaryKey:
    return BarPrimaryKey(instrument.pk, timeframe, START + timedelta(minutes=minute))


def change_url(bar_key: BarPrimaryKey) -> str:
    return reverse("admin:market_bar_change", args=bar_key.url_args)


def delete_url(bar_key: BarPrimaryKey) -> str:
    return reverse("admin:market_bar_delete", args=bar_key.url_args)


def listed(page) -> list[tuple[str, str, str]]:
    """(instrument, timeframe, time) of the bars a list page shows, in its order."""
    return [
        (str(r["bar"].instrument), r["bar"].timeframe, r["bar"].time.strftime("%H:%M")) for r in page.context["rows"]
    ]


VALUES = {"open": 10.0, "high": 11.0, "low": 9.0, "close": 9.5, "volume": 2.0, "trades": 4, "vwap": "", "final": "on"}


@pytest.fixture
def root(db) -> Client:
    return logged_in(get_user_model().objects.create_superuser("root", "root@example.com", "a-long-password"))


def staff_with(*codenames: str) -> Client:
    user = get_user_model().objects.create_user(f"staff-{'-'.join(codenames) or 'none'}", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="market", codename__in=codenames))
    return logged_in(user)


@pytest.fixture
def eth(exchange) -> Instrument:
    return Instrument.objects.create(exchange=exchange, symbol="ETH/USDT")


@pytest.fixture
def aapl(db) -> Instrument:
    alpaca = Exchange.objects.create(code="alpaca", name="Alpaca")
    return Instrument.objects.create(exchange=alpaca, symbol="AAPL", asset_class="stock")


@pytest.fixture
def stored(instrument, eth, aapl) -> None:
    """XRP/ETH and ETH/USDT on binance, AAPL on alpaca: 1m bars at minutes 0-2, 5m at 0; one
    non-final bar (AAPL 1m at minute 2)."""
    rows = [row(i, m) for i in (instrument, eth) for m in range(3)]
    rows += [row(aapl, 0), row(aapl, 1), row(aapl, 2, final=False)]
    rows += [row(i, 0, "5m") for i in (instrument, eth, aapl)]
    store_bars(rows, publish=False)


# --- The list ----------------------------------------------------------------------------------


def test_the_list_shows_the_newest_bars_first_with_their_columns(root, stored, instrument, eth, aapl):
    page = root.get(LIST)

    assert page.status_code == 200
    # At one time, by instrument (the newest instrument first), then timeframe.
    assert listed(page)[:3] == [
        ("AAPL on alpaca", "1m", "00:02"),
        ("ETH/USDT on binance", "1m", "00:02"),
        ("XRP/ETH on binance", "1m", "00:02"),
    ]
    times = [r["bar"].time for r in page.context["rows"]]
    assert times == sorted(times, reverse=True)
    assert len(times) == 12
    assert b"2024-03-01 00:02:00" in page.content
    assert f'href="{change_url(key(aapl, 2))}"'.encode() in page.content


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"timeframe": "5m"}, 3),
        ({"final": "0"}, 1),
        ({"final": "1"}, 11),
        ({"q": "usdt"}, 4),
        ({"q": "nothing-like-it"}, 0),
        ({"since": "2024-03-02"}, 0),
        ({"until": "2024-02-29"}, 0),
        ({"since": "2024-03-01", "until": "2024-03-01"}, 12),
    ],
)
def test_each_filter_narrows_the_list(root, stored, params, expected):
    page = root.get(LIST, params)

    assert page.status_code == 200
    assert len(page.context["rows"]) == expected


def test_the_exchange_and_instrument_filters_pick_their_bars(root, stored, instrument, aapl):
    by_exchange = root.get(LIST, {"exchange": aapl.exchange_id})
    by_instrument = root.get(LIST, {"instrument": instrument.pk, "timeframe": "1m"})

    assert {r["bar"].instrument_id for r in by_exchange.context["rows"]} == {aapl.pk}
    assert listed(by_instrument) == [("XRP/ETH on binance", "1m", t) for t in ("00:02", "00:01", "00:00")]


def test_searching_a_symbol_offers_its_instruments_as_filters(root, stored, eth):
    page = root.get(LIST, {"q": "ETH"})

    offered = {choice["display"]: choice["query_string"] for choice in page.context["instrument_choices"]}
    assert offered["ETH/USDT on binance"] == f"?instrument={eth.pk}"
    assert "XRP/ETH on binance" in offered
    assert "AAPL on alpaca" not in offered


def test_pages_continue_after_the_last_bar_shown_until_every_bar_was_listed(root, stored, monkeypatch):
    monkeypatch.setattr("market.admin_bars.PAGE_SIZE", 5)
    seen, pages = [], 0
    url: str | None = LIST + "?timeframe=1m"
    while url:
        page = root.get(url)
        seen += [(r["bar"].instrument_id, r["bar"].time) for r in page.context["rows"]]
        pages += 1
        url = LIST + page.context["next_url"] if page.context["next_url"] else None

    assert pages == 2  # 9 bars of 1m, 5 a page
    assert len(seen) == len(set(seen)) == 9
    assert [time for _, time in seen] == sorted((time for _, time in seen), reverse=True)


def test_the_list_never_counts_the_bars(root, stored):
    with CaptureQueriesContext(connection) as queries:
        root.get(LIST)

    assert not [q["sql"] for q in queries if "market_bar" in q["sql"] and "COUNT(" in q["sql"].upper()]


@pytest.mark.parametrize(
    "params",
    [
        {"exchange": "abc"},
        {"exchange": "99999"},
        {"timeframe": "2m"},
        {"final": "maybe"},
        {"since": "yesterday"},
        {"after": "not-a-key"},
        {"after": "1/1m/2024-03-01T00:00:00"},
        {"since": "2024-03-02", "until": "2024-03-01"},
        {"instrument": "99999999999999999999"},
        {"q": "a\x00b"},
    ],
)
def test_bad_list_parameters_are_shown_as_errors(root, stored, params):
    page = root.get(LIST, params)

    assert page.status_code == 400
    assert page.context["form"].errors
    assert page.context["rows"] == []
    assert b"errornote" in page.content


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the per-series read is PostgreSQL's")
def test_the_per_series_read_returns_what_the_plain_ordered_query_returns(instrument, eth, aapl):
    random_source = random.Random(7)
    rows = []
    for instrument_ in (instrument, eth, aapl):
        for timeframe, step in (("1m", 1), ("5m", 5), ("1h", 60)):
            times = range(0, 600, step)
            minutes = random_source.sample(times, k=random_source.randint(0, min(40, len(times))))
            rows += [row(instrument_, m, timeframe, final=random_source.random() < 0.8) for m in minutes]
    store_bars(rows, publish=False)
    ids, timeframes = [instrument.pk, eth.pk, aapl.pk], ["1m", "5m", "15m", "1h", "4h", "1d"]
    cases = [BarFilters(), BarFilters(final=False), BarFilters(since=START + timedelta(hours=2))]
    cases.append(BarFilters(until=START + timedelta(hours=3), final=True))

    for filters in cases:
        for limit in (1, 7, 50, 500):
            after = None
            for _ in range(4):  # the first pages, each after the last bar of the one before
                fast = newest_bars(filters, after=after, limit=limit)
                plain = newest_bars_plain(ids, timeframes, filters, after, limit)
                assert [BarPrimaryKey.of(bar) for bar in fast] == [BarPrimaryKey.of(bar) for bar in plain]
                assert [bar.close for bar in fast] == [bar.close for bar in plain]
                if not fast:
                    break
                after = BarPrimaryKey.of(fast[-1])


# --- Change ------------------------------------------------------------------------------------


def test_the_change_page_shows_the_bar_with_its_key_read_only(root, stored, instrument):
    page = root.get(change_url(key(instrument, 1)))

    assert page.status_code == 200
    assert page.context["form"].initial["close"] == 10.5
    assert set(page.context["form"].fields) == {"open", "high", "low", "close", "volume", "trades", "vwap", "final"}
    assert b'<div class="readonly">XRP/ETH on binance</div>' in page.content


def test_saving_a_valid_bar_stores_it_and_logs_the_change(root, stored, instrument):
    response = root.post(change_url(key(instrument, 1)), VALUES)

    assert response.status_code == 302
    assert response["Location"] == LIST
    bar = Bar.objects.get(pk=tuple(key(instrument, 1)))
    assert (bar.close, bar.volume, bar.trades) == (9.5, 2.0, 4)
    entry = LogEntry.objects.get()
    assert (entry.action_flag, entry.object_id) == (CHANGE, f"{instrument.pk}/1m/2024-03-01T00:01:00Z")
    assert entry.get_change_message() == "Changed close, volume and trades."
    assert entry.object_repr == "XRP/ETH on binance 1m 2024-03-01 00:01:00 UTC"


def test_a_changed_minute_is_queued_for_the_roll_up(root, stored, instrument):
    PendingRollup.objects.all().delete()

    root.post(change_url(key(instrument, 1)), VALUES)

    minute = START + timedelta(minutes=1)
    spans = PendingRollup.objects.filter(instrument_id=instrument.pk, first_time__lte=minute, last_time__gte=minute)
    assert spans.exists()


def test_a_bar_the_store_refuses_is_a_form_error_and_nothing_changes(root, stored, instrument):
    response = root.post(change_url(key(instrument, 1)), {**VALUES, "high": 8.0})

    assert response.status_code == 200
    assert "high is below low" in str(response.context["form"].non_field_errors())
    assert b"bars rejected, nothing written" in response.content
    assert Bar.objects.get(pk=tuple(key(instrument, 1))).high == 11.0
    assert not LogEntry.objects.exists()


@pytest.mark.parametrize("bad", [{"close": "ten"}, {"close": ""}, {"trades": "2.5"}, {"close": "inf"}])
def test_values_that_are_not_numbers_are_field_errors(root, stored, instrument, bad):
    response = root.post(change_url(key(instrument, 1)), {**VALUES, **bad})

    assert response.status_code == 200
    assert set(response.context["form"].errors) == set(bad)


def test_continue_editing_returns_to_the_change_page(root, stored, instrument):
    response = root.post(change_url(key(instrument, 1)), {**VALUES, "_continue": "1"})

    assert response["Location"] == change_url(key(instrument, 1))


def test_the_recent_actions_link_of_a_logged_change_leads_to_the_bar(root, stored, instrument):
    root.post(change_url(key(instrument, 1)), VALUES)

    link = LogEntry.objects.get().get_admin_url()
    assert link is not None
    assert root.get(link)["Location"] == change_url(key(instrument, 1))


# --- Add ---------------------------------------------------------------------------------------


def new_bar(of: Instrument, **changes) -> dict[str, object]:
    return {
        "instrument": of.pk,
        "timeframe": "1h",
        "time_0": "2024-03-01",
        "time_1": "02:00:00",
        **VALUES,
        **changes,
    }


def test_adding_a_bar_stores_it_and_logs_the_addition(root, stored, instrument):
    response = root.post(reverse("admin:market_bar_add"), new_bar(instrument))

    assert response.status_code == 302, response.context and response.context["form"].errors
    bar = Bar.objects.get(instrument=instrument, timeframe="1h")
    assert (bar.time, bar.close, bar.final) == (START + timedelta(hours=2), 9.5, True)
    entry = LogEntry.objects.get()
    assert (entry.action_flag, entry.object_id) == (ADDITION, f"{instrument.pk}/1h/2024-03-01T02:00:00Z")


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"timeframe": "1m", "time_1": "00:01:00"}, "exists already"),
        ({"instrument": 99999}, "Select a valid choice"),
        ({"timeframe": "2m"}, "Select a valid choice"),
        ({"time_0": "2024-13-01"}, "Enter a valid date"),
        ({"low": 0.0}, "low must be above 0"),
    ],
)
def test_a_new_bar_that_cannot_be_stored_is_a_form_error(root, stored, instrument, changes, error):
    before = Bar.objects.count()

    response = root.post(reverse("admin:market_bar_add"), new_bar(instrument, **changes))

    assert response.status_code == 200
    assert error in str(response.context["form"].errors)
    assert Bar.objects.count() == before


def test_an_empty_new_bar_names_every_required_field(root):
    response = root.post(reverse("admin:market_bar_add"), {})

    assert response.status_code == 200
    assert {"instrument", "time", "open", "high", "low", "close"} <= set(response.context["form"].errors)


# --- Delete ------------------------------------------------------------------------------------


def test_deleting_a_bar_asks_first_then_deletes_and_logs(root, stored, instrument):
    confirmation = root.get(delete_url(key(instrument, 1)))
    assert confirmation.status_code == 200
    assert b"Are you sure" in confirmation.content
    assert Bar.objects.filter(pk=tuple(key(instrument, 1))).exists()

    response = root.post(delete_url(key(instrument, 1)), {"post": "yes"})

    assert response["Location"] == LIST
    assert not Bar.objects.filter(pk=tuple(key(instrument, 1))).exists()
    entry = LogEntry.objects.get()
    assert (entry.action_flag, entry.object_id) == (DELETION, f"{instrument.pk}/1m/2024-03-01T00:01:00Z")


def test_deleting_selected_bars_asks_first_then_deletes_them(root, stored, instrument, eth):
    selected = [key(instrument, 0).text, key(eth, 2, "1m").text]
    action = {"action": "delete_selected", "_selected_action": selected}

    confirmation = root.post(LIST + "?timeframe=1m", action)
    assert confirmation.status_code == 200
    assert len(confirmation.context["bars"]) == 2
    assert Bar.objects.count() == 12

    response = root.post(LIST + "?timeframe=1m", {**action, "post": "yes"}, follow=True)

    assert response.redirect_chain == [(LIST + "?timeframe=1m", 302)]
    assert b"Successfully deleted 2 bars." in response.content
    assert Bar.objects.count() == 10
    assert set(LogEntry.objects.values_list("object_id", "action_flag")) == {(text, DELETION) for text in selected}


def test_running_no_action_or_on_no_bars_changes_nothing(root, stored, instrument):
    no_action = root.post(LIST, {"action": "", "_selected_action": [key(instrument, 0).text]}, follow=True)
    no_bars = root.post(LIST, {"action": "delete_selected", "post": "yes"}, follow=True)

    assert b"No action selected." in no_action.content
    assert b"Items must be selected" in no_bars.content
    assert Bar.objects.count() == 12


def test_delete_bars_deletes_exactly_the_given_keys_and_then_drops_their_cached_responses(
    stored, instrument, eth, django_capture_on_commit_callbacks, monkeypatch
):
    dropped: list[set[int]] = []
    monkeypatch.setattr("market.services.invalidate_cached_bars", lambda ids: dropped.append(set(ids)))
    with django_capture_on_commit_callbacks(execute=True):
        deleted = delete_bars([key(instrument, 0), key(eth, 0, "5m"), key(instrument, 99)])
        assert dropped == []  # not before the commit

    assert deleted == 2
    assert Bar.objects.count() == 10
    assert not Bar.objects.filter(pk__in=[tuple(key(instrument, 0)), tuple(key(eth, 0, "5m"))]).exists()
    assert Bar.objects.filter(pk=tuple(key(eth, 0))).exists()
    assert dropped == [{instrument.pk, eth.pk}]


def test_deleting_no_stored_bar_drops_no_cached_response(
    stored, instrument, django_capture_on_commit_callbacks, monkeypatch
):
    dropped: list[set[int]] = []
    monkeypatch.setattr("market.services.invalidate_cached_bars", lambda ids: dropped.append(set(ids)))
    with django_capture_on_commit_callbacks(execute=True):
        assert delete_bars([key(instrument, 99)]) == 0
        assert delete_bars([]) == 0

    assert dropped == []


# --- Permissions and bad keys --------------------------------------------------------------------


def every_bar_request(instrument) -> list[tuple[str, str, dict[str, object]]]:
    bar = key(instrument, 1)
    return [
        ("get", LIST, {}),
        ("post", LIST, {"action": "delete_selected", "_selected_action": [bar.text], "post": "yes"}),
        ("get", reverse("admin:market_bar_add"), {}),
        ("post", reverse("admin:market_bar_add"), new_bar(instrument)),
        ("get", change_url(bar), {}),
        ("post", change_url(bar), VALUES),
        ("get", delete_url(bar), {}),
        ("post", delete_url(bar), {"post": "yes"}),
        ("get", LIST + quote(bar.text) + "/change/", {}),  # the recent actions' link
    ]


def test_staff_without_bar_permissions_get_403_everywhere_and_no_bars_in_the_index(stored, instrument):
    client = staff_with("view_exchange")

    statuses = {
        (method, url): getattr(client, method)(url, data).status_code
        for method, url, data in every_bar_request(instrument)
    }

    assert set(statuses.values()) == {403}, statuses
    market = next(app for app in client.get("/admin/").context["app_list"] if app["app_label"] == "market")
    assert "Bar" not in [model["object_name"] for model in market["models"]]
    assert Bar.objects.count() == 12


def test_a_viewer_of_bars_may_list_and_view_but_not_change_add_or_delete(stored, instrument):
    client = staff_with("view_bar")

    statuses = [getattr(client, method)(url, data).status_code for method, url, data in every_bar_request(instrument)]

    assert statuses == [200, 403, 403, 403, 200, 403, 403, 403, 302]
    view = client.get(change_url(key(instrument, 1)))
    assert all(field.disabled for field in view.context["form"].fields.values())
    assert b'name="_save"' not in view.content
    index_entry = next(
        m for app in client.get("/admin/").context["app_list"] for m in app["models"] if m["object_name"] == "Bar"
    )
    assert (index_entry["view_only"], index_entry["add_url"]) == (True, None)
    assert Bar.objects.count() == 12


def test_each_permission_opens_its_own_pages(stored, instrument):
    assert staff_with("change_bar").post(change_url(key(instrument, 1)), VALUES).status_code == 302
    assert staff_with("add_bar").post(reverse("admin:market_bar_add"), new_bar(instrument)).status_code == 302
    assert staff_with("delete_bar").post(delete_url(key(instrument, 1)), {"post": "yes"}).status_code == 302


def test_someone_not_staff_is_sent_to_the_admin_login(stored, instrument, make_user):
    client = logged_in(make_user("analyst"))

    for method, url, data in every_bar_request(instrument):
        response = getattr(client, method)(url, data)
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/?next=")


@pytest.mark.parametrize(
    "path",
    [
        "{id}/1m/2024-03-01T00:01:00/change/",  # no UTC offset
        "{id}/1m/yesterday/change/",
        "{id}/2m/2024-03-01T00:01:00Z/change/",  # unknown timeframe
        "99999/1m/2024-03-01T00:01:00Z/change/",  # unknown instrument
        "{id}/1m/2024-03-01T00:01:30Z/change/",  # no such bar
        "0/1m/2024-03-01T00:01:00Z/delete/",
        "{id}/1m/2024-02-30T00:00:00Z/delete/",
        "not-a-key/change/",
        "{id}/1m/9999-12-31T23:59:59-01:00/change/",  # after the last datetime once in UTC
        "99999999999999999999/1m/2024-03-01T00:01:00Z/change/",  # beyond bigint
    ],
)
def test_bad_bar_urls_are_404(root, stored, instrument, path):
    assert root.get(LIST + path.format(id=instrument.pk)).status_code == 404


def test_a_malformed_selection_is_404(root, stored):
    response = root.post(LIST, {"action": "delete_selected", "_selected_action": ["1/1m/soon"], "post": "yes"})

    assert response.status_code == 404
    assert Bar.objects.count() == 12


def test_a_key_with_an_offset_names_the_same_bar(root, stored, instrument):
    page = root.get(LIST + f"{instrument.pk}/1m/2024-03-01T01:01:00+01:00/change/")

    assert page.status_code == 200
    assert page.context["bar"].time == START + timedelta(minutes=1)

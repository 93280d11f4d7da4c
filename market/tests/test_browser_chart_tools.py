"""The chart's tools in a real browser: indicators (overlays, panes, parameters, live values, the URL)
and price alerts created from the chart.

Same product and browser as test_browser.py (its fixtures, imported): `serve` with the replay
collector on a fresh SQLite database with the sample data, driven through headless Chromium and
observed through `window.cryptostock`, the page's test hook.
"""

# ruff: noqa: F811 (the fixtures imported below are redefined, by design, as the tests' arguments)

from __future__ import annotations

import json
import urllib.request
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Page

from market.tests.test_browser import (  # noqa: F401 (fixtures, used by name)
    LIVE_UPDATE_SECONDS,
    REPO_ROOT,
    Product,
    browser,
    console_errors,
    create_account,
    log_in_as,
    page,
    product,
    screenshot,
    server,
    state,
    wait_for_bars,
    wait_until,
    xrp_eth,
)

pytestmark = pytest.mark.browser

ANALYST = "chart-analyst"
ANALYST_PASSWORD = "a long test password 7"


@pytest.fixture(scope="module")
def analyst(product: Product) -> str:
    """A user who may own alerts (role analyst), in the product's database."""
    create_account(product, ANALYST, ANALYST_PASSWORD, "analyst")
    return ANALYST


def log_in(page: Page, server: str, next_path: str) -> None:
    log_in_as(page, server, next_path, ANALYST, ANALYST_PASSWORD)


def indicator_params(page: Page) -> list[str]:
    return parse_qs(urlsplit(page.url).query).get("ind", [])


def add_indicator(page: Page, name: str, **params: object) -> None:
    """Through the dialog, as a user does: pick the indicator, change parameters, press Add."""
    page.get_by_test_id("add-indicator").click()
    dialog = page.get_by_test_id("indicator-dialog")
    dialog.get_by_label("Indicator").select_option(name)
    for param, value in params.items():
        dialog.locator(f"#indicator-param-{param}").fill(str(value))
    dialog.get_by_test_id("indicator-submit").click()
    assert dialog.is_hidden()


def test_adding_rsi_opens_a_pane_with_values_that_the_legend_shows(page, server, xrp_eth):
    # Given the 1m chart of XRP/ETH: the price pane and the volume pane
    page.goto(f"{server}/?instrument={xrp_eth}&tf=1m")
    wait_for_bars(page)
    wait_until(
        page,
        "() => !window.cryptostock.indicatorsLoading"
        " && !document.querySelector('[data-testid=add-indicator]').disabled",
    )
    assert state(page)["panes"] == 2

    # When the user adds RSI with the dialog's defaults
    add_indicator(page, "rsi")

    # Then a third pane shows RSI's values for the loaded bars, the URL names it, the legend shows its value
    loaded = wait_until(
        page, "() => window.cryptostock.indicators.length === 1 && window.cryptostock.indicators[0].values > 0"
    )
    rsi = loaded["indicators"][0]
    assert loaded["panes"] == 3
    assert (rsi["name"], rsi["pane"]) == ("rsi", 2)
    assert 0 <= rsi["last"]["rsi"] <= 100
    assert indicator_params(page) == ["rsi"]
    legend = page.get_by_test_id("legend-indicators")
    assert legend.inner_text().startswith("RSI 14")
    assert legend.locator("[data-output=rsi]").inner_text() != "—"
    screenshot(page, "chart-rsi-dark")

    # When the user removes it from its chip
    page.get_by_role("button", name="Remove RSI 14").click()

    # Then its pane is gone and the URL no longer names it
    wait_until(page, "() => window.cryptostock.panes === 2 && window.cryptostock.indicators.length === 0")
    assert indicator_params(page) == []


def test_the_legend_follows_the_crosshair_with_every_indicators_value(page, server, xrp_eth):
    # Given the chart with an EMA and an RSI
    page.goto(f"{server}/?instrument={xrp_eth}&tf=1m&ind=ema&ind=rsi")
    wait_for_bars(page)
    wait_until(
        page, "() => window.cryptostock.indicators.every((i) => i.values > 0) && !window.cryptostock.indicatorsLoading"
    )
    legend = page.get_by_test_id("legend")
    newest_time = legend.locator("[data-legend=time]").inner_text()

    # When the pointer rests on an older candle in the middle of the price pane
    chart = page.get_by_test_id("chart")
    box = chart.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.3)

    # Then the legend shows that bar's time, its OHLCV and both indicators' values at it
    wait_until(page, "(t) => document.querySelector('[data-legend=time]').textContent !== t", arg=newest_time)
    assert legend.locator("[data-legend=open]").inner_text() != "—"
    rows = page.get_by_test_id("legend-indicators").locator("li")
    assert rows.count() == 2
    assert rows.nth(0).inner_text().startswith("EMA 20")
    assert rows.nth(1).inner_text().startswith("RSI 14")
    for row in range(2):
        assert rows.nth(row).locator(".legend-indicator-value").first.inner_text() != "—"


def test_overlays_and_panes_with_parameters_survive_a_reload_from_the_url(page, server, xrp_eth):
    # Given the chart
    page.goto(f"{server}/?instrument={xrp_eth}&tf=1m")
    wait_for_bars(page)
    wait_until(page, "() => !document.querySelector('[data-testid=add-indicator]').disabled")

    # When the user adds an EMA 50 over the price, Bollinger bands and a MACD with other parameters
    add_indicator(page, "ema", length=50)
    add_indicator(page, "bbands")
    add_indicator(page, "macd", fast=8, slow=21)

    # Then the overlays share the price pane, MACD has its own, and all of them have values
    shown = wait_until(
        page,
        "() => window.cryptostock.indicators.length === 3 && window.cryptostock.indicators.every((i) => i.values > 0)",
    )
    assert [(i["name"], i["pane"]) for i in shown["indicators"]] == [("ema", 0), ("bbands", 0), ("macd", 2)]
    assert shown["indicators"][0]["params"]["length"] == 50
    assert indicator_params(page) == ["ema:length=50", "bbands", "macd:fast=8,slow=21"]

    # When the user edits the EMA from its chip: length 21
    page.get_by_role("button", name="Edit EMA 50").click()
    page.get_by_test_id("indicator-dialog").locator("#indicator-param-length").fill("21")
    page.get_by_test_id("indicator-submit").click()
    wait_until(
        page,
        "() => window.cryptostock.indicators[0].params.length === 21 && window.cryptostock.indicators[0].values > 0",
    )
    assert indicator_params(page)[0] == "ema:length=21"

    # And a parameter out of bounds is refused in the dialog, naming the bounds
    page.get_by_role("button", name="Edit EMA 21").click()
    page.get_by_test_id("indicator-dialog").locator("#indicator-param-length").fill("1")
    page.get_by_test_id("indicator-submit").click()
    error = page.get_by_test_id("indicator-dialog").get_by_role("alert")
    assert "between 2 and 100000" in error.inner_text()
    page.get_by_test_id("indicator-dialog").get_by_role("button", name="Cancel").click()

    # Then reopening the URL (a bookmark) shows the same indicators with the same parameters
    url = page.url
    page.goto("about:blank")
    page.goto(url)
    wait_for_bars(page)
    again = wait_until(
        page,
        "() => window.cryptostock.indicators.length === 3 && window.cryptostock.indicators.every((i) => i.values > 0)",
    )
    assert [(i["name"], i["params"].get("length"), i["params"].get("fast")) for i in again["indicators"]] == [
        ("ema", 21, None),
        ("bbands", 20, None),
        ("macd", None, 8),
    ]
    assert again["panes"] == 3
    screenshot(page, "chart-indicators-dark")

    # And they are redrawn in the light theme and fit a phone's width
    page.get_by_test_id("theme-toggle").click()
    wait_until(page, "() => window.cryptostock.theme === 'light'")
    assert state(page)["panes"] == 3
    screenshot(page, "chart-indicators-light")
    page.set_viewport_size({"width": 375, "height": 812})
    page.wait_for_timeout(300)
    assert page.get_by_role("button", name="Edit EMA 21").is_visible()
    assert page.get_by_test_id("add-indicator").is_visible()
    screenshot(page, "chart-indicators-phone-light")


def test_indicator_values_follow_the_live_bars(page, server, xrp_eth):
    # Given RSI with the defaults (values from the live feed) and RSI 21 (refetched on bar close)
    page.goto(f"{server}/?instrument={xrp_eth}&tf=1m&ind=rsi&ind=rsi:length=21")
    wait_for_bars(page)
    before = wait_until(
        page,
        "() => window.cryptostock.indicators.length === 2 && window.cryptostock.indicators.every((i) => i.values > 0)",
    )
    newest = max(i["lastTime"] for i in before["indicators"])

    # When bars close on the live feed
    after = wait_until(
        page,
        "(newest) => window.cryptostock.indicatorLiveUpdates > 0 && window.cryptostock.indicatorRefetches > 0"
        " && window.cryptostock.indicators.every((i) => i.lastTime > newest)",
        arg=newest,
        timeout_ms=LIVE_UPDATE_SECONDS * 1000,
    )

    # Then both panes have values for bars newer than the page loaded with, from the live feed and the API
    for indicator in after["indicators"]:
        assert 0 <= indicator["last"]["rsi"] <= 100
    assert after["indicators"][0]["last"] != after["indicators"][1]["last"]


def test_scrolling_back_loads_older_indicator_values_with_the_older_bars(page, server, xrp_eth):
    # Given the chart with a Stochastic pane over its first page of bars
    page.goto(f"{server}/?instrument={xrp_eth}&tf=1m&ind=stoch")
    wait_for_bars(page)
    first = wait_until(
        page, "() => window.cryptostock.indicators.length === 1 && window.cryptostock.indicators[0].values > 0"
    )
    assert not first["historyExhausted"]

    # When the user zooms out from the keyboard until older bars are fetched
    page.get_by_test_id("chart").focus()
    for _ in range(12):
        page.keyboard.press("-")
    wait_until(page, "() => window.cryptostock.olderLoads > 0 && !window.cryptostock.loadingOlder")

    # Then the indicator has values for the older bars too
    older = wait_until(
        page,
        "(n) => !window.cryptostock.indicatorsLoading && window.cryptostock.indicators[0].values > n",
        arg=first["indicators"][0]["values"],
    )
    assert older["indicators"][0]["values"] >= older["barsLoaded"] - 5


def test_creating_a_price_alert_from_the_chart(page, server, xrp_eth, analyst):
    # Given a signed-in analyst on the chart
    log_in(page, server, f"/?instrument={xrp_eth}&tf=1m")
    loaded = wait_for_bars(page)
    close = loaded["lastBar"]["close"]
    # (the module's other tests may have left rules of this analyst: only the new one counts)
    existing = {rule["id"] for rule in rules_of(page, server, xrp_eth)}
    wait_until(page, "(n) => window.cryptostock.alertLines === n", arg=len(existing))

    # When they right-click the price pane above the candles
    chart = page.get_by_test_id("chart")
    box = chart.bounding_box()
    assert box is not None
    chart.click(button="right", position={"x": box["width"] / 3, "y": box["height"] * 0.2})

    # Then a dashed draft line and the alert form open at that price
    dialog = page.get_by_test_id("alert-dialog")
    assert dialog.is_visible()
    assert state(page)["alertDraft"] is True
    level = float(dialog.get_by_label("Price").input_value())
    assert level > 0

    # When they set the price a little above the last close and create the alert
    target = round(close * 1.01, 8)
    dialog.get_by_label("Price").fill(str(target))
    dialog.get_by_label("When the close is").select_option("crossing_up")
    dialog.get_by_label("Name (optional)").fill("XRP breakout")
    screenshot(page, "chart-alert-form-dark")
    with page.expect_response(lambda r: "/api/v1/alerts/rules/" in r.url and r.request.method == "POST") as posted:
        dialog.get_by_test_id("alert-submit").click()
    assert posted.value.status == 201, posted.value.text()

    # Then the rule exists for the user, and the chart keeps a line at its price
    lines = len(existing) + 1
    wait_until(page, "(n) => window.cryptostock.alertsCreated === 1 && window.cryptostock.alertLines === n", arg=lines)
    new_rules = [rule for rule in rules_of(page, server, xrp_eth) if rule["id"] not in existing]
    assert [(r["name"], r["condition"], r["level"], r["timeframe"]) for r in new_rules] == [
        ("XRP breakout", "crossing_up", target, "1m")
    ]
    assert dialog.is_hidden()

    # And the line is drawn again when the chart is opened later
    page.reload()
    wait_for_bars(page)
    wait_until(page, "(n) => window.cryptostock.alertLines === n", arg=lines)


def rules_of(page: Page, server: str, instrument: int) -> list[dict[str, Any]]:
    """The signed-in user's alert rules on the instrument, through the API."""
    return json.loads(page.request.get(f"{server}/api/v1/alerts/rules/?instrument={instrument}").text())["results"]


def test_the_alert_button_works_from_the_keyboard(page, server, xrp_eth, analyst):
    # Given a signed-in analyst on the chart
    log_in(page, server, f"/?instrument={xrp_eth}&tf=1m")
    wait_for_bars(page)

    # When they focus the Alert button and press Enter
    page.get_by_test_id("alert-button").focus()
    page.keyboard.press("Enter")

    # Then the form opens at the last close with the price field focused; Escape closes it and drops the line
    dialog = page.get_by_test_id("alert-dialog")
    assert dialog.is_visible()
    # (the replay keeps trading meanwhile, so the close may have moved a little since the form opened)
    assert float(dialog.get_by_label("Price").input_value()) == pytest.approx(state(page)["lastBar"]["close"], rel=0.02)
    assert page.evaluate("() => document.activeElement.id") == "alert-level"
    page.keyboard.press("Escape")
    assert dialog.is_hidden()
    wait_until(page, "() => window.cryptostock.alertDraft === false")  # (the dialog's close event comes later)


def create_rule_on_page(page: Page, instrument: int, level: float, name: str) -> dict[str, Any]:
    """A price-level rule made through the API with the page's session, as the alert form makes one."""
    return page.evaluate(
        """async ([instrument, level, name]) => {
            const token = document.querySelector("[name=csrfmiddlewaretoken]").value;
            const response = await fetch("/api/v1/alerts/rules/", {
                method: "POST",
                headers: {"Content-Type": "application/json", "X-CSRFToken": token},
                body: JSON.stringify({instrument, timeframe: "1m", condition: "crossing", level, name}),
            });
            return response.json();
        }""",
        [instrument, level, name],
    )


def stored_level(page: Page, server: str, rule_id: int) -> float:
    return json.loads(page.request.get(f"{server}/api/v1/alerts/rules/{rule_id}/").text())["level"]


def line_of(page: Page, rule_id: int) -> dict[str, Any]:
    return next(line for line in state(page)["alertLevels"] if line["id"] == rule_id)


def chart_with_a_rule_line(page: Page, server: str, xrp_eth: int, name: str) -> dict[str, Any]:
    """The signed-in analyst's chart with a new rule's line a little above the last close."""
    log_in(page, server, f"/?instrument={xrp_eth}&tf=1m")
    close = wait_for_bars(page)["lastBar"]["close"]
    rule = create_rule_on_page(page, xrp_eth, round(close * 1.002, 8), name)
    assert "id" in rule, rule
    page.reload()
    wait_for_bars(page)
    wait_until(page, "(id) => window.cryptostock.alertLevels.some((line) => line.id === id)", arg=rule["id"])
    return rule


def drag_line(page: Page, rule_id: int, dy: float, *, release: bool = True) -> None:
    """Press on the rule's line, move the pointer `dy` pixels, release (as a user drags it)."""
    box = page.get_by_test_id("chart").bounding_box()
    assert box is not None
    x = box["x"] + box["width"] / 3
    # The price axis may rescale as live bars arrive: press again if the line moved under the pointer.
    for _ in range(3):
        y = box["y"] + line_of(page, rule_id)["y"]
        page.mouse.move(x, y)
        page.mouse.down()
        if state(page)["alertDragging"]:
            break
        page.mouse.up()
    else:
        pytest.fail(f"the line of rule {rule_id} could not be grabbed: {state(page)['alertLevels']}")
    page.mouse.move(x, y + dy, steps=8)
    assert line_of(page, rule_id)["shown"] != line_of(page, rule_id)["level"]
    if release:
        page.mouse.up()


def test_dragging_an_alert_line_moves_the_rule(page, server, xrp_eth, analyst):
    # Given the chart with one of the analyst's price alerts on it
    rule = chart_with_a_rule_line(page, server, xrp_eth, "drag me")

    # When they drag its line 60 pixels up and let go
    with page.expect_response(lambda r: f"/api/v1/alerts/rules/{rule['id']}/" in r.url) as patched:
        drag_line(page, rule["id"], -60)
    assert patched.value.request.method == "PATCH"
    assert patched.value.status == 200, patched.value.text()

    # Then the stored rule watches the higher price the line now shows
    moved = wait_until(page, "() => window.cryptostock.alertsMoved === 1")
    line = next(line for line in moved["alertLevels"] if line["id"] == rule["id"])
    assert line["level"] > rule["level"]
    assert line["shown"] == line["level"]
    assert stored_level(page, server, rule["id"]) == line["level"]
    assert not moved["alertDragging"]
    assert "Alert moved" in page.get_by_test_id("live-notice").inner_text()
    screenshot(page, "chart-alert-dragged")

    # And a drag that Escape cancels puts the line back and stores nothing
    drag_line(page, rule["id"], -40, release=False)
    page.keyboard.press("Escape")
    page.mouse.up()
    cancelled = line_of(page, rule["id"])
    assert cancelled["shown"] == cancelled["level"] == line["level"]
    assert state(page)["alertsMoved"] == 1
    assert stored_level(page, server, rule["id"]) == line["level"]


def test_an_alert_line_moves_from_the_keyboard(page, server, xrp_eth, analyst):
    # Given the chart with one of the analyst's price alerts on it
    rule = chart_with_a_rule_line(page, server, xrp_eth, "keyboard")
    target = round(rule["level"] * 0.99, 8)

    # When they go back from the chart into the alert lines, type a price and press Enter
    page.get_by_test_id("chart").focus()
    page.keyboard.press("Shift+Tab")
    panel = page.get_by_test_id("alert-lines")
    assert page.evaluate("() => document.activeElement.dataset.testid") == "alert-line-level"
    assert panel.is_visible()
    field = panel.get_by_label("keyboard: close crossing")
    field.focus()
    field.fill(str(target))
    assert line_of(page, rule["id"])["shown"] == target
    screenshot(page, "chart-alert-lines-keyboard")
    with page.expect_response(lambda r: f"/api/v1/alerts/rules/{rule['id']}/" in r.url) as patched:
        field.press("Enter")
    assert patched.value.status == 200, patched.value.text()

    # Then the rule is stored at that price
    wait_until(page, "() => window.cryptostock.alertsMoved === 1")
    assert stored_level(page, server, rule["id"]) == target

    # And Escape puts a typed price back without storing it
    field.fill(str(round(target * 1.05, 8)))
    field.press("Escape")
    assert line_of(page, rule["id"])["shown"] == target
    assert float(field.input_value()) == target


def test_a_line_goes_back_when_the_server_refuses_the_move(page, server, xrp_eth, analyst, console_errors):
    # Given the chart with a rule's line, and the rule deleted meanwhile (in another tab, say)
    console_errors.allow("404")
    rule = chart_with_a_rule_line(page, server, xrp_eth, "deleted elsewhere")
    deleted = page.evaluate(
        """async (id) => (await fetch(`/api/v1/alerts/rules/${id}/`, {
            method: "DELETE",
            headers: {"X-CSRFToken": document.querySelector("[name=csrfmiddlewaretoken]").value},
        })).status""",
        rule["id"],
    )
    assert deleted == 204

    # When the user drags its line
    drag_line(page, rule["id"], -60)

    # Then the line goes back to where it was and a notice says the move failed
    failed = wait_until(page, "() => window.cryptostock.alertMoveFailures === 1")
    assert line_of(page, rule["id"])["shown"] == rule["level"]
    assert failed["alertsMoved"] == 0
    assert "The alert stays at" in page.get_by_test_id("live-notice").inner_text()


def test_anonymous_visitors_get_no_alert_control(page, server, xrp_eth):
    page.goto(f"{server}/?instrument={xrp_eth}&tf=1m")
    wait_for_bars(page)
    assert page.get_by_test_id("alert-button").count() == 0
    assert page.get_by_test_id("alert-dialog").count() == 0


def test_the_instrument_search_switches_the_chart(page, server, xrp_eth):
    # Given the chart of another instrument
    with urllib.request.urlopen(f"{server}/api/v1/instruments/?limit=100") as response:
        others = [item["id"] for item in json.load(response)["results"] if item["id"] != xrp_eth]
    page.goto(f"{server}/?instrument={others[0]}&tf=1m")
    wait_for_bars(page)

    # When the user types the start of a symbol into the search box and presses Enter
    search = page.get_by_test_id("instrument-search")
    search.fill("xrp/e")
    search.press("Enter")

    # Then the chart shows that instrument, and the URL says so
    page.wait_for_url(f"**/?instrument={xrp_eth}&tf=1m")
    wait_until(page, f"() => window.cryptostock.instrument === {xrp_eth} && window.cryptostock.ready")
    assert page.get_by_test_id("instrument-select").input_value() == str(xrp_eth)

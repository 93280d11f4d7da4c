"""The watchlist, alerts and system pages in headless Chromium against the real product.

The same product as the chart's browser tests (market/tests/test_browser.py: `serve` with the replay
collector streaming recorded XRP/ETH trades, on a fresh SQLite database), plus an admin account
that logs in through the login page. The pages' test hooks (`window.cryptostockWatchlist`,
`window.cryptostockAlerts`) say what arrived. Screenshots land in var/screenshots/ (git-ignored).
"""

from __future__ import annotations

import subprocess

import pytest
from playwright.sync_api import Page

from market.tests import test_browser as chart_browser
from market.tests.test_browser import LIVE_UPDATE_SECONDS, REPO_ROOT, Product, create_account, log_in_as

# The chart tests' fixtures, shared: the product (serve + replay), Chromium, a page per test.
product = chart_browser.product
server = chart_browser.server
browser = chart_browser.browser
console_errors = chart_browser.console_errors
page = chart_browser.page
xrp_eth = chart_browser.xrp_eth

pytestmark = pytest.mark.browser

SCREENSHOTS = REPO_ROOT / "var" / "screenshots"
USERNAME = "pat"
PASSWORD = "a-long-test-passphrase-42"
READY_MS = 20_000


@pytest.fixture(scope="module")
def admin_account(product: Product) -> str:
    """An admin (every page) created the way an operator does, with `manage.py createuser`."""
    create_account(product, USERNAME, PASSWORD, "admin")
    return USERNAME


def log_in(page: Page, server: str, next_path: str) -> None:
    log_in_as(page, server, next_path, USERNAME, PASSWORD)


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def phone_screenshot(page: Page, name: str) -> None:
    page.set_viewport_size({"width": 375, "height": 812})
    page.wait_for_timeout(200)
    screenshot(page, name)
    page.set_viewport_size({"width": 1360, "height": 860})


def test_the_watchlist_shows_instruments_and_live_prices(page, server, admin_account, xrp_eth):
    # Given an admin with an empty watchlist, logged in through the login page
    log_in(page, server, "/watchlist/")

    # Then every active instrument is listed, XRP/ETH among them
    assert page.get_by_test_id("watchlist-default").is_visible()
    row = page.locator(f'tr[data-instrument="{xrp_eth}"]')
    assert row.locator("th").inner_text().startswith("XRP/ETH")

    # And a live bar arrives over the WebSocket and is shown as the row's last price
    page.wait_for_function(
        "(id) => window.cryptostockWatchlist.liveBars > 0 && window.cryptostockWatchlist.lastUpdate?.instrument === id",
        arg=xrp_eth,
        timeout=LIVE_UPDATE_SECONDS * 1000,
    )
    hook = page.evaluate("() => ({...window.cryptostockWatchlist})")
    assert hook["connection"] == "live"
    assert page.get_by_test_id("connection-status").get_attribute("data-state") == "live"
    assert row.get_by_test_id("last-price").inner_text() == hook["lastUpdate"]["shown"]
    assert row.locator("path[data-cell=spark]").get_attribute("d").startswith("M")
    screenshot(page, "watchlist")
    phone_screenshot(page, "watchlist-phone")

    # When the admin adds XRP/ETH from the form, the list becomes theirs: that one instrument
    page.get_by_label("Add an instrument").select_option(str(xrp_eth))
    page.get_by_role("button", name="Add", exact=True).click()
    page.wait_for_function("() => document.querySelectorAll('[data-testid=watch-row]').length === 1")
    assert page.get_by_test_id("watchlist-default").count() == 0
    assert page.get_by_role("button", name="Remove XRP/ETH from the watchlist").is_visible()
    page.wait_for_function("() => window.cryptostockWatchlist.instruments.length === 1")

    # And adding the other instrument puts it last; "move up" from the keyboard puts it first
    other = page.get_by_label("Add an instrument").locator("option").first
    other_symbol = other.inner_text().split(" · ")[0]
    page.get_by_label("Add an instrument").select_option(other.get_attribute("value"))
    page.get_by_role("button", name="Add", exact=True).click()
    page.wait_for_function("() => window.cryptostockWatchlist.instruments.length === 2")
    assert page.get_by_test_id("watch-row").nth(1).locator("th").inner_text().startswith(other_symbol)
    page.get_by_role("button", name=f"Move {other_symbol} up").focus()
    page.keyboard.press("Enter")
    page.wait_for_function("(id) => window.cryptostockWatchlist.instruments[1] === id", arg=xrp_eth, timeout=READY_MS)
    assert page.get_by_test_id("watch-row").first.locator("th").inner_text().startswith(other_symbol)

    # And removing it leaves XRP/ETH alone, still followed live
    page.get_by_role("button", name=f"Remove {other_symbol} from the watchlist").click()
    page.wait_for_function("(id) => window.cryptostockWatchlist.instruments.join() === String(id)", arg=xrp_eth)


def test_an_alert_created_from_the_form_is_listed_and_its_firing_arrives_live(
    page, console_errors, server, admin_account, xrp_eth
):
    # Given the alerts page (Chromium logs the refused request below as an error)
    console_errors.allow("status of 400")
    log_in(page, server, "/alerts/")
    page.wait_for_function("() => window.cryptostockAlerts && window.cryptostockAlerts.connection === 'live'")
    form = page.get_by_test_id("rule-form")

    # When the form is sent without the level a comparison needs, the API's error shows at the field
    form.get_by_label("Instrument").select_option(str(xrp_eth))
    form.get_by_label("Condition").select_option("greater_than")
    page.get_by_test_id("create-rule").click()
    level_error = page.locator("#err-level")
    level_error.wait_for(state="visible")
    assert "give a level" in level_error.inner_text()
    assert form.get_by_label("Level").get_attribute("aria-invalid") == "true"
    screenshot(page, "alerts-form-error")

    # When the user gives a level every XRP/ETH price is above, and creates the rule
    form.get_by_label("Name").fill("XRP above a tenth of a cent")
    form.get_by_label("Level").fill("0.001")
    form.get_by_label("Fire").select_option("once_per_bar")
    page.get_by_test_id("create-rule").click()

    # Then it is in the list of rules, and the error is gone
    rule = page.get_by_test_id("rule-row").filter(has_text="XRP above a tenth of a cent")
    rule.wait_for(state="visible")
    assert level_error.is_hidden()
    assert "XRP/ETH" in rule.inner_text()

    # And as the next live XRP/ETH bar closes above the level, the firing arrives over the WebSocket
    page.wait_for_function("() => window.cryptostockAlerts.alerts > 0", timeout=LIVE_UPDATE_SECONDS * 1000)
    page.get_by_test_id("notifications").locator("li").first.wait_for(state="visible")
    page.get_by_test_id("firings").wait_for(state="visible")
    assert "In-app: sent" in page.get_by_test_id("firings").inner_text()
    screenshot(page, "alerts")

    # And pausing it from the list offers to resume it
    rule.get_by_role("button", name="Pause XRP above a tenth of a cent").click()
    page.get_by_role("button", name="Resume XRP above a tenth of a cent").wait_for(state="visible")
    phone_screenshot(page, "alerts-phone")


def test_the_system_page_renders_for_an_admin(page, server, admin_account):
    # Given an admin, with the replay collector reporting its health
    log_in(page, server, "/system/")

    # Then the collectors, schedules and links are there
    collectors = page.get_by_test_id("collectors")
    collectors.wait_for(state="visible")
    assert "replay" in collectors.inner_text()
    assert "roll-up" in page.get_by_test_id("beat").inner_text()
    assert page.get_by_role("link", name="Admin", exact=True).get_attribute("href") == "/admin/"
    assert page.get_by_test_id("flower-link").is_visible()

    # And "Refresh" re-renders the tables from the server
    before = page.get_by_test_id("as-of").get_attribute("datetime")
    page.get_by_role("button", name="Refresh").click()
    page.wait_for_function("() => window.cryptostockSystem.refreshes > 0")
    assert page.get_by_test_id("as-of").get_attribute("datetime") >= before
    screenshot(page, "system")
    phone_screenshot(page, "system-phone")

    # And the light theme applies to it as to the chart
    page.get_by_test_id("theme-toggle").click()
    assert page.locator("html").get_attribute("data-theme") == "light"
    screenshot(page, "system-light")


def test_the_login_and_error_pages_in_the_products_look(page, console_errors, server, admin_account):
    console_errors.allow("status of 404")  # Chromium logs the page's own status
    page.goto(f"{server}/accounts/login/")
    screenshot(page, "login")
    response = page.goto(f"{server}/no-such-page/")
    assert response is not None
    assert response.status == 404
    assert page.get_by_role("heading", name="Page not found").is_visible()
    screenshot(page, "404")
    phone_screenshot(page, "404-phone")


def test_pages_for_admins_only_answer_403_to_others(page, console_errors, server, product):
    console_errors.allow("status of 403")  # Chromium logs the page's own status
    # Given an analyst (alerts, but not the System page)
    create_account(product, "ana", PASSWORD, "analyst")
    log_in_as(page, server, "/alerts/", "ana", PASSWORD)
    assert page.get_by_role("link", name="System").count() == 0

    response = page.goto(f"{server}/system/")

    assert response is not None
    assert response.status == 403
    assert page.get_by_role("heading", name="Not allowed").is_visible()
    screenshot(page, "403")


def test_screenshots_folder_is_ignored_by_git():
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", str(SCREENSHOTS / "watchlist.png")], cwd=REPO_ROOT, check=False
    )
    assert ignored.returncode == 0


def test_the_account_menu_works_from_the_keyboard_and_logs_out(page, server, admin_account):
    # Given a signed-in user on the watchlist
    log_in(page, server, "/watchlist/")
    menu = page.get_by_test_id("user-menu")

    # When they open the account menu from the keyboard, Escape closes it again
    menu.locator("summary").focus()
    page.keyboard.press("Enter")
    assert menu.get_attribute("open") is not None
    page.keyboard.press("Escape")
    assert menu.get_attribute("open") is None

    # And "Log out" ends the session: the pages ask for a login again
    menu.locator("summary").click()
    page.get_by_test_id("logout").click()
    page.wait_for_url(f"{server}/accounts/login/")
    page.goto(f"{server}/alerts/")
    page.wait_for_url(f"{server}/accounts/login/?next=/alerts/")

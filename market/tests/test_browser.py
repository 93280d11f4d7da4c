"""The chart page in a real browser against the real product.

The product runs as it would for a user: `migrate`, `load_sample_data`, then `serve` with the replay
collector streaming recorded real XRP/ETH trades, on a fresh SQLite database. Headless Chromium (the
Debian `chromium` package, never a browser downloaded by `playwright install`) opens the page and
observes it through `window.cryptostock`, the page's test hook, instead of through pixels.
Screenshots land in test-artifacts/ at the repository root.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from cryptostock.webserver import NotServing, wait_until_serving

pytestmark = pytest.mark.browser

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# 60 recorded minutes per second: the sparse XRP/ETH recording then trades several times a second.
REPLAY_SPEED = "60"
SERVER_START_SECONDS = 60
LIVE_UPDATE_SECONDS = 30
PAGE_READY_MS = 20_000


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(tmp: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("REDIS_URL", "DATABASE_URL")}
    env.update(
        {
            "DATABASE_URL": f"sqlite:///{tmp / 'db.sqlite3'}",  # an absolute path: sqlite:////tmp/...
            "VAR_DIR": str(tmp / "var"),
            "DEBUG": "1",
            # The demo setting: market data readable without logging in (the page under test is public).
            "PUBLIC_MARKET_DATA": "1",
            # Every test's page comes from 127.0.0.1: the anonymous per-IP API limit (30/m) is for
            # the internet, not for one browser running a suite (the page does retry after a 429).
            "API_RATE_ANON": "1000/m",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def manage(*args: str, env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=180
    )
    if result.returncode != 0:
        pytest.fail(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")


class Product:
    """`manage.py serve` with the replay collector, on a fixed port so that it can be restarted."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        with self.log.open("a") as output:
            self.process = subprocess.Popen(
                [
                    sys.executable, "manage.py", "serve",
                    "--host", "127.0.0.1", "--port", str(self.port),
                    "--collect", "replay", "--speed", REPLAY_SPEED,
                ],
                cwd=REPO_ROOT, env=self.env, stdout=output, stderr=subprocess.STDOUT, text=True,
            )  # fmt: skip
        self.wait_until_healthy()

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def wait_until_healthy(self) -> None:
        assert self.process is not None
        try:
            wait_until_serving(f"{self.url}/health", self.process, timeout=SERVER_START_SECONDS)
        except NotServing as failure:
            pytest.fail(f"{failure}:\n{self.log.read_text()[-4000:]}")


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Product]:
    """The product on a fresh database with the sample data and a live replay feed."""
    tmp = tmp_path_factory.mktemp("product")
    env = server_env(tmp)
    manage("migrate", "--noinput", env=env)
    manage("load_sample_data", env=env)
    product = Product(env, tmp / "serve.log")
    try:
        product.start()
        yield product
    finally:
        product.stop()


@pytest.fixture
def server(product: Product) -> str:
    """The product's base URL, up and answering (a test before may have restarted it)."""
    if product.process is None:
        product.start()
    return product.url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: install Debian's chromium package (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class ConsoleErrors:
    """Errors the page logs; a test names those it expects (a dropped WebSocket, say)."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.allowed: list[str] = []

    def allow(self, fragment: str) -> None:
        self.allowed.append(fragment)

    def unexpected(self) -> list[str]:
        return [m for m in self.messages if not any(fragment in m for fragment in self.allowed)]


@pytest.fixture
def console_errors() -> ConsoleErrors:
    return ConsoleErrors()


@pytest.fixture
def page(browser: Browser, console_errors: ConsoleErrors) -> Iterator[Page]:
    """A fresh browser context (no stored theme) whose unexpected console errors fail the test."""
    context = browser.new_context(viewport={"width": 1360, "height": 860}, color_scheme="dark")
    page = context.new_page()
    page.on("pageerror", lambda error: console_errors.messages.append(f"uncaught: {error}"))
    page.on("console", lambda m: console_errors.messages.append(m.text) if m.type == "error" else None)
    yield page
    context.close()
    assert console_errors.unexpected() == [], "the page logged errors"


@pytest.fixture(scope="module")
def xrp_eth(product: Product) -> int:
    """The id of XRP/ETH on binance, the instrument the replay streams."""
    with urllib.request.urlopen(f"{product.url}/api/v1/instruments/?exchange=binance&limit=100") as response:
        instruments = json.load(response)["results"]
    return next(item["id"] for item in instruments if item["symbol"] == "XRP/ETH")


def state(page: Page) -> dict[str, Any]:
    return page.evaluate("() => ({...window.cryptostock})")


def wait_until(page: Page, condition: str, *, timeout_ms: int = PAGE_READY_MS, arg: Any = None) -> dict[str, Any]:
    """Wait for a JavaScript condition on the page; on timeout, fail showing the page's state."""
    try:
        page.wait_for_function(condition, arg=arg, timeout=timeout_ms)
    except PlaywrightTimeoutError:
        hook = page.evaluate("() => window.cryptostock ? {...window.cryptostock} : null")
        pytest.fail(f"timed out after {timeout_ms} ms waiting for {condition}\npage state: {hook}")
    return state(page)


def wait_for_bars(page: Page) -> dict[str, Any]:
    return wait_until(page, "() => window.cryptostock && window.cryptostock.ready")


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def test_the_chart_draws_stored_candles_and_then_live_updates(page, server, xrp_eth):
    # Given the chart page, as a user opens it
    page.goto(f"{server}/")

    # Then it draws candles from the stored history on a canvas
    first = wait_for_bars(page)
    assert first["barsLoaded"] > 0
    assert page.get_by_test_id("chart").locator("canvas").count() > 0
    assert page.get_by_test_id("chart-empty").is_hidden()

    # When the user picks the instrument the replay is streaming
    if first["instrument"] != xrp_eth:
        page.get_by_test_id("instrument-select").select_option(str(xrp_eth))
        page.wait_for_url(f"**/?instrument={xrp_eth}&tf=1m")
        wait_until(page, f"() => window.cryptostock.instrument === {xrp_eth} && window.cryptostock.ready")
    loaded = state(page)
    assert loaded["barsLoaded"] > 0
    assert page.get_by_test_id("legend").inner_text().startswith("XRP/ETH")

    # Then live bars arrive over the WebSocket and change the newest candle
    wait_until(
        page,
        "([updates, last]) => window.cryptostock.updates > updates"
        " && JSON.stringify(window.cryptostock.lastBar) !== last",
        arg=[loaded["updates"], json.dumps(loaded["lastBar"], separators=(",", ":"))],
        timeout_ms=LIVE_UPDATE_SECONDS * 1000,
    )
    live = state(page)
    assert live["connection"] == "live"
    assert page.get_by_test_id("connection-status").get_attribute("data-state") == "live"
    assert live["lastBar"]["time"] >= loaded["lastBar"]["time"]
    screenshot(page, "chart-live-dark")


def test_switching_timeframe_reloads_bars_and_updates_the_url(page, server, xrp_eth):
    # Given the 1m chart of XRP/ETH, opened from a bookmark
    page.goto(f"{server}/?instrument={xrp_eth}&tf=1m")
    assert wait_for_bars(page)["barsLoaded"] > 0

    # When the user switches to 5m
    with page.expect_response(lambda response: "/api/v1/bars/" in response.url and "timeframe=5m" in response.url):
        page.get_by_role("radio", name="5m", exact=True).check()

    # Then the URL says so and the page shows 5m bars, or says calmly that there are none
    page.wait_for_url(f"**/?instrument={xrp_eth}&tf=5m")
    wait_until(page, "() => window.cryptostock.timeframe === '5m' && window.cryptostock.ready")
    five = state(page)
    assert five["barsLoaded"] > 0 or page.get_by_test_id("chart-empty").is_visible()
    assert page.get_by_test_id("timeframe-5m").is_checked()
    screenshot(page, "chart-5m")

    # And the browser's back button returns to the 1m bars
    page.go_back()
    wait_until(page, "() => window.cryptostock.timeframe === '1m' && window.cryptostock.ready")
    assert state(page)["barsLoaded"] > 0
    assert page.get_by_test_id("timeframe-1m").is_checked()


def test_scrolling_back_loads_older_history(page, server, xrp_eth):
    # Given the chart with its first page of bars, and more history in the database
    page.goto(f"{server}/?instrument={xrp_eth}&tf=1m")
    first = wait_for_bars(page)
    assert not first["historyExhausted"], f"the sample history must be longer than one page of bars: {first}"

    # When the user zooms out from the keyboard until the oldest loaded bar comes into view
    page.get_by_test_id("chart").focus()
    for _ in range(12):
        page.keyboard.press("-")

    # Then older bars are fetched and put before the first ones
    wait_until(page, "() => window.cryptostock.olderLoads > 0 && !window.cryptostock.loadingOlder")
    older = state(page)
    assert older["firstBarTime"] < first["firstBarTime"]
    assert older["barsLoaded"] > first["barsLoaded"]


def test_the_theme_toggle_flips_the_theme_and_remembers_it(page, server, xrp_eth):
    # Given the page in the dark theme (the browser prefers dark, nothing stored yet)
    page.goto(f"{server}/?instrument={xrp_eth}&tf=1m")
    wait_for_bars(page)
    html = page.locator("html")
    toggle = page.get_by_test_id("theme-toggle")
    assert html.get_attribute("data-theme") == "dark"
    assert toggle.get_attribute("aria-pressed") == "true"

    # When the user clicks the toggle
    toggle.click()

    # Then the page, the chart hook and the stored preference are light
    assert html.get_attribute("data-theme") == "light"
    assert toggle.get_attribute("aria-pressed") == "false"
    assert state(page)["theme"] == "light"
    assert page.evaluate("() => localStorage.getItem('cryptostock.theme')") == "light"
    screenshot(page, "chart-light")

    # And the choice survives a reload
    page.reload()
    wait_for_bars(page)
    assert html.get_attribute("data-theme") == "light"

    # And at phone width the page still works
    page.set_viewport_size({"width": 375, "height": 812})
    page.wait_for_timeout(300)
    assert page.get_by_test_id("chart").locator("canvas").first.is_visible()
    screenshot(page, "chart-phone-light")


def test_the_page_reconnects_and_resubscribes_when_the_server_comes_back(
    page, console_errors, product, server, xrp_eth
):
    # Given the live chart (Chromium logs each refused reconnection attempt as an error)
    console_errors.allow("WebSocket connection to")
    page.goto(f"{server}/?instrument={xrp_eth}&tf=1m")
    wait_for_bars(page)
    wait_until(page, "() => window.cryptostock.connection === 'live'")
    status = page.get_by_test_id("connection-status")

    # When the server goes away, the page says so and keeps the chart
    product.stop()
    wait_until(page, "() => window.cryptostock.connection !== 'live'", timeout_ms=10_000)
    assert status.get_attribute("data-state") in ("connecting", "reconnecting")
    assert state(page)["barsLoaded"] > 0
    screenshot(page, "chart-reconnecting")

    # Then, once it is back, the page reconnects by itself and live bars flow again
    updates = state(page)["updates"]
    product.start()
    wait_until(page, "() => window.cryptostock.connection === 'live'", timeout_ms=LIVE_UPDATE_SECONDS * 1000)
    wait_until(page, f"() => window.cryptostock.updates > {updates}", timeout_ms=LIVE_UPDATE_SECONDS * 1000)
    assert status.get_attribute("data-state") == "live"


# --- Accounts, shared with the other browser test modules ------------------------------------------


def create_account(product: Product, username: str, password: str, role: str) -> None:
    """A user of `role` in the product's database, created the way an operator does (`createuser`)."""
    result = subprocess.run(
        [sys.executable, "manage.py", "createuser", username, "--role", role, "--password-stdin"],
        cwd=REPO_ROOT, env=product.env, input=f"{password}\n", capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if result.returncode != 0:
        pytest.fail(f"createuser failed:\n{result.stdout}\n{result.stderr}")


def log_in_as(page: Page, server: str, next_path: str, username: str, password: str) -> None:
    """Log in through the login page and land on `next_path`."""
    page.goto(f"{server}/accounts/login/?{urllib.parse.urlencode({'next': next_path})}")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"**{next_path.split('?')[0]}*")

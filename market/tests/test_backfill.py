"""Backfill and gap fill: the real clients (ccxt, alpaca-py, yfinance) against local servers that
answer with real data (freqtrade's Binance candles in the klines shape, alpaca-py's recorded bodies)."""

from __future__ import annotations

from datetime import UTC, datetime
from io import StringIO
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from django.core.management import CommandError, call_command

from market.backfill import fill_gap, plan_backfill, run_backfill
from market.history import HistoryConfig, history_client
from market.history.base import HistoryBar, RateLimiter
from market.models import AssetClass, BackfillJob, BackfillStatus, Bar, Exchange, Instrument
from market.rollup import roll_up
from market.services import store_bars
from market.tasks import backfill_task, gap_fill_task
from market.tests.history_server import LocalServer, alpaca_handler, binance_handler, yahoo_handler
from market.tests.test_rollup import minute_rows

pytestmark = pytest.mark.django_db

SINCE = "2019-10-11"
UNTIL = "2019-10-14"
NOW = datetime(2019, 10, 20, tzinfo=UTC)


def ms(moment: datetime | pd.Timestamp) -> int:
    return int(moment.timestamp() * 1000)


def after(candles: pd.DataFrame, count: int) -> pd.Timestamp:
    """Where a page starts after `count` bars were fetched: a minute after the last one."""
    return candles["date"].iloc[0] if count == 0 else candles["date"].iloc[count - 1] + pd.Timedelta(minutes=1)


def stored(instrument_id: int, timeframe: str = "1m") -> pd.DataFrame:
    rows = Bar.objects.filter(instrument_id=instrument_id, timeframe=timeframe).order_by("time")
    frame = pd.DataFrame.from_records(
        list(rows.values_list("time", "open", "high", "low", "close", "volume")),
        columns=["date", "open", "high", "low", "close", "volume"],
    )
    frame["date"] = pd.to_datetime(frame["date"], utc=True)
    return frame


@pytest.fixture(autouse=True)
def _no_request_spacing_and_eager_tasks(settings):
    settings.BACKFILL_REQUEST_INTERVAL = 0.0
    settings.CELERY_TASK_ALWAYS_EAGER = True  # with REDIS_URL set, tasks would go to a worker


@pytest.fixture
def xrp(sample_data) -> pd.DataFrame:
    return pd.read_feather(sample_data / "freqtrade" / "XRP_ETH-1m.feather")


@pytest.fixture
def binance(xrp, settings):
    with LocalServer(binance_handler(xrp, "XRPETH", "XRP", "ETH")) as server:
        settings.BINANCE_API_URL = server.url
        yield server


def backfill(*args: str) -> str:
    out = StringIO()
    call_command("backfill", *args, "--no-progress", stdout=out)
    return out.getvalue()


BINANCE_ARGS = ("--source", "binance", "--symbol", "XRP/ETH", "--timeframe", "1m", "--since", SINCE, "--until", UNTIL)


# --- Binance through ccxt ---------------------------------------------------------------------------


def test_it_pages_through_binance_klines_and_stores_exactly_the_real_bars(instrument, binance, xrp):
    output = backfill(*BINANCE_ARGS)

    pd.testing.assert_frame_equal(stored(instrument.pk), xrp, check_dtype=False)
    klines = binance.paths("/api/v3/klines")
    # 2,469 bars: two full pages of 1,000 and a short last one, each starting a minute after the
    # last bar of the previous one.
    assert [int(q["startTime"]) for q in klines] == [ms(after(xrp, i)) for i in (0, 1000, 2000)]
    assert {q["endTime"] for q in klines} == {str(ms(datetime(2019, 10, 14, tzinfo=UTC)) - 1)}
    assert binance.paths("/api/v3/exchangeInfo")  # ccxt's load_markets, spot only
    job = BackfillJob.objects.get()
    assert (job.status, job.pages, job.bars, job.cursor) == (BackfillStatus.DONE, 3, 2469, job.end)
    assert "Done: 2469 bars in 3 pages" in output
    # The triggers queued the history for the roll-up, like any other write.
    assert roll_up(NOW, publish=False).written["5m"] == 706


def test_running_it_again_fetches_and_changes_nothing(instrument, binance):
    backfill(*BINANCE_ARGS)
    requests = len(binance.requests)

    output = backfill(*BINANCE_ARGS)

    assert "Already done" in output
    assert len(binance.requests) == requests
    assert Bar.objects.filter(instrument=instrument).count() == 2469


def test_an_interrupted_backfill_resumes_after_its_last_stored_page(instrument, binance, xrp):
    job = plan_backfill(
        "binance", instrument, "1m", datetime(2019, 10, 11, tzinfo=UTC), datetime(2019, 10, 14, tzinfo=UTC), NOW
    )

    def interrupt(job, stored):  # Ctrl-C right after the first page was stored
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_backfill(job.pk, progress=interrupt)
    job.refresh_from_db()
    assert (job.status, job.bars, job.cursor) == (BackfillStatus.FAILED, 1000, after(xrp, 1000))
    assert "interrupted" in job.error
    before = len(binance.paths("/api/v3/klines"))

    output = backfill(*BINANCE_ARGS)

    assert "Resuming" in output
    resumed = binance.paths("/api/v3/klines")[before:]
    assert [int(q["startTime"]) for q in resumed] == [ms(after(xrp, i)) for i in (1000, 2000)]
    pd.testing.assert_frame_equal(stored(instrument.pk), xrp, check_dtype=False)
    assert BackfillJob.objects.get().status == BackfillStatus.DONE


def test_without_until_a_second_run_fetches_only_what_is_new(instrument, binance, xrp, monkeypatch):
    monkeypatch.setattr("django.utils.timezone.now", lambda: datetime(2019, 10, 12, tzinfo=UTC))
    backfill("--source", "binance", "--symbol", "XRP/ETH", "--timeframe", "1m", "--since", SINCE)
    monkeypatch.setattr("django.utils.timezone.now", lambda: datetime(2019, 10, 14, tzinfo=UTC))
    before = len(binance.paths("/api/v3/klines"))

    backfill("--source", "binance", "--symbol", "XRP/ETH", "--timeframe", "1m", "--since", SINCE)

    second = binance.paths("/api/v3/klines")[before:]
    assert int(second[0]["startTime"]) == ms(datetime(2019, 10, 12, tzinfo=UTC))
    pd.testing.assert_frame_equal(stored(instrument.pk), xrp, check_dtype=False)
    assert [job.end.day for job in BackfillJob.objects.order_by("created_at")] == [12, 14]


def test_rate_limited_requests_are_retried_after_a_pause(instrument, xrp, settings):
    pauses: list[float] = []
    with LocalServer(binance_handler(xrp.head(50), "XRPETH", "XRP", "ETH", failures=[429, 503])) as server:
        config = HistoryConfig(binance_url=server.url, min_interval=0)
        client = history_client("binance", config)
        client.sleep = pauses.append
        job = plan_backfill(
            "binance", instrument, "1m", datetime(2019, 10, 11, tzinfo=UTC), datetime(2019, 10, 12, tzinfo=UTC), NOW
        )

        run_backfill(job.pk, client=client)

    assert pauses == [1.0, 2.0]  # exponential backoff
    assert Bar.objects.filter(instrument=instrument).count() == 50


def test_requests_are_spaced_by_the_configured_interval():
    slept: list[float] = []
    clock = iter([0.0, 0.0, 0.1, 0.35, 1.0, 1.0]).__next__
    limiter = RateLimiter(0.35, slept.append, clock)

    for _ in range(3):
        limiter.wait()

    assert slept == [pytest.approx(0.25)]


def test_a_symbol_the_exchange_does_not_list_fails_with_the_reason(exchange, binance):
    Instrument.objects.create(exchange=exchange, symbol="DOGE/ETH")

    with pytest.raises(CommandError, match="BadSymbol"):
        backfill("--source", "binance", "--symbol", "DOGE/ETH", "--timeframe", "1m", "--since", SINCE, "--until", UNTIL)

    job = BackfillJob.objects.get()
    assert job.status == BackfillStatus.FAILED
    assert "BadSymbol" in job.error


def test_the_gap_fill_task_fetches_exactly_the_missing_span(instrument, binance, xrp):
    start, end = datetime(2019, 10, 11, 10, tzinfo=UTC), datetime(2019, 10, 11, 11, tzinfo=UTC)
    outside = (xrp["date"] < start) | (xrp["date"] >= end)
    store_bars(minute_rows(instrument.pk, xrp[outside]), publish=False)

    result = gap_fill_task.delay(instrument.pk, start.isoformat(), end.isoformat()).get()

    assert [(int(q["startTime"]), int(q["endTime"])) for q in binance.paths("/api/v3/klines")] == [
        (ms(start), ms(end) - 1)
    ]
    missing = int((~outside).sum())
    assert result.endswith(f"{missing} bars")
    pd.testing.assert_frame_equal(stored(instrument.pk), xrp, check_dtype=False)
    job = BackfillJob.objects.get()
    assert job.gap_fill
    assert (job.start, job.end) == (start, end)


def test_the_collectors_call_point_fills_a_gap_and_returns_the_bars(instrument, binance, xrp):
    start, end = datetime(2019, 10, 11, 10, tzinfo=UTC), datetime(2019, 10, 11, 10, 30, tzinfo=UTC)

    filled = fill_gap(instrument_id=instrument.pk, start=start, end=end, source="replay")

    assert filled == int(((xrp["date"] >= start) & (xrp["date"] < end)).sum())


def test_the_async_option_runs_the_job_in_a_celery_task(instrument, binance, settings):
    output = backfill(*BINANCE_ARGS, "--async")

    job = BackfillJob.objects.get()
    assert f"Queued backfill job {job.pk}" in output
    assert job.status == BackfillStatus.DONE  # eager in the tests: it ran at once
    assert backfill_task(job.pk).endswith("done, 2469 bars in 3 pages")


# --- Alpaca through alpaca-py ------------------------------------------------------------------------


@pytest.fixture
def alpaca_exchange(db) -> Exchange:
    return Exchange.objects.create(code="alpaca", name="Alpaca", asset_classes="stock,crypto")


def alpaca_server(sample_data: Path, settings: Any, routes: dict[tuple[str, str], str]) -> LocalServer:
    server = LocalServer(alpaca_handler(sample_data / "alpaca-py", routes))
    server.__enter__()
    settings.ALPACA_DATA_URL = server.url
    settings.ALPACA_API_KEY, settings.ALPACA_SECRET_KEY = "test-key", "test-secret"
    return server


TOKEN = "QUFQTHxEfDIwMjItMDItMDJUMDU6MDA6MDAuMDAwMDAwMDAwWg=="
PAGED = {
    ("/v2/stocks/bars", ""): "stock_data__get_bars.json",
    ("/v2/stocks/bars", TOKEN): "stock_data__multisymbol_get_bars.json",
}


def test_alpaca_stock_bars_are_paged_with_next_page_token_and_labelled_by_session_date(
    alpaca_exchange, sample_data, settings
):
    aapl = Instrument.objects.create(exchange=alpaca_exchange, symbol="AAPL", asset_class=AssetClass.STOCK)
    server = alpaca_server(sample_data, settings, PAGED)
    try:
        backfill(
            "--source",
            "alpaca",
            "--symbol",
            "AAPL",
            "--timeframe",
            "1d",
            "--since",
            "2022-02-01",
            "--until",
            "2022-03-10",
        )
    finally:
        server.__exit__()

    bars = list(
        Bar.objects.filter(instrument=aapl).order_by("time").values_list("time", "open", "close", "trades", "vwap")
    )
    assert bars == [
        (datetime(2022, 2, 1, tzinfo=UTC), 174.0, 174.61, 732412, 173.703516),
        (datetime(2022, 2, 2, tzinfo=UTC), 174.64, 175.84, 675034, 174.941288),
        (datetime(2022, 3, 9, tzinfo=UTC), 161.51, 162.95, 700291, 161.942117),
    ]
    pages = server.paths("/v2/stocks/bars")
    assert [q.get("page_token") for q in pages] == [None, TOKEN]
    assert {(q["symbols"], q["timeframe"], q["feed"]) for q in pages} == {("AAPL", "1Day", "iex")}
    assert [job.pages for job in BackfillJob.objects.all()] == [2]


def test_an_interrupted_alpaca_backfill_resumes_with_the_page_token(alpaca_exchange, sample_data, settings):
    aapl = Instrument.objects.create(exchange=alpaca_exchange, symbol="AAPL", asset_class=AssetClass.STOCK)
    server = alpaca_server(sample_data, settings, PAGED)
    try:
        job = plan_backfill(
            "alpaca", aapl, "1d", datetime(2022, 2, 1, tzinfo=UTC), datetime(2022, 3, 10, tzinfo=UTC), NOW
        )
        with pytest.raises(KeyboardInterrupt):
            run_backfill(job.pk, progress=lambda job, stored: (_ for _ in ()).throw(KeyboardInterrupt))
        job.refresh_from_db()
        assert job.page_token == TOKEN

        run_backfill(job.pk)
    finally:
        server.__exit__()

    assert [q.get("page_token") for q in server.paths("/v2/stocks/bars")] == [None, TOKEN]
    assert Bar.objects.filter(instrument=aapl).count() == 3


def test_an_empty_alpaca_response_finishes_the_job_with_no_bars(alpaca_exchange, sample_data, settings):
    Instrument.objects.create(exchange=alpaca_exchange, symbol="AAPL", asset_class=AssetClass.STOCK)
    server = alpaca_server(
        sample_data, settings, {("/v2/stocks/bars", ""): "stock_data__get_bars_single_empty_response.json"}
    )
    try:
        output = backfill(
            "--source",
            "alpaca",
            "--symbol",
            "AAPL",
            "--timeframe",
            "1m",
            "--since",
            "2022-02-05",
            "--until",
            "2022-02-06",
        )
    finally:
        server.__exit__()

    assert "Done: 0 bars in 1 pages" in output
    assert BackfillJob.objects.get().status == BackfillStatus.DONE


def test_alpaca_crypto_bars_come_from_the_crypto_endpoint(alpaca_exchange, sample_data, settings):
    btc = Instrument.objects.create(exchange=alpaca_exchange, symbol="BTC/USD")
    server = alpaca_server(
        sample_data, settings, {("/v1beta3/crypto/us/bars", ""): "crypto_data__get_crypto_bars.json"}
    )
    try:
        backfill(
            "--source",
            "alpaca",
            "--symbol",
            "BTC/USD",
            "--timeframe",
            "1h",
            "--since",
            "2022-03-09T05:00",
            "--until",
            "2022-03-09T06:00",
        )
    finally:
        server.__exit__()

    assert list(Bar.objects.filter(instrument=btc).values_list("time", "close", "trades")) == [
        (datetime(2022, 3, 9, 5, tzinfo=UTC), 162.95, 700291)
    ]


def test_a_timeframe_the_source_cannot_serve_is_refused_before_any_request(alpaca_exchange):
    Instrument.objects.create(exchange=alpaca_exchange, symbol="BTC/USD")

    with pytest.raises(CommandError, match="alpaca serves crypto in 1m, 5m, 15m and 1h"):
        backfill("--source", "alpaca", "--symbol", "BTC/USD", "--timeframe", "1d", "--since", "2022-03-01")

    assert not BackfillJob.objects.exists()


# --- Yahoo through yfinance -----------------------------------------------------------------------


def test_yahoo_bars_come_through_yfinance_window_by_window(xrp, settings):
    yahoo = Exchange.objects.create(code="yahoo", name="Yahoo Finance")
    instrument = Instrument.objects.create(exchange=yahoo, symbol="XRP-ETH", asset_class=AssetClass.CRYPTO)
    with LocalServer(yahoo_handler("XRP-ETH", xrp)) as server:
        settings.YAHOO_BASE_URL = server.url
        backfill("--source", "yahoo", "--symbol", "XRP-ETH", "--timeframe", "1m", "--since", SINCE, "--until", UNTIL)

    pd.testing.assert_frame_equal(stored(instrument.pk), xrp, check_dtype=False)
    charts = [q for q in server.paths("/v8/finance/chart/XRP-ETH") if q.get("interval") == "1m"]
    assert [(int(q["period1"]), int(q["period2"])) for q in charts] == [
        (ms(datetime(2019, 10, 11, tzinfo=UTC)) // 1000, ms(datetime(2019, 10, 14, tzinfo=UTC)) // 1000)
    ]


def test_bars_a_source_gets_wrong_are_dropped_not_stored():
    good = HistoryBar(NOW, 1.0, 2.0, 0.5, 1.5, 10.0)
    assert good.problem() is None
    assert HistoryBar(NOW, 1.0, 0.9, 0.5, 1.5, 10.0).problem() == "open/close outside low..high"
    assert HistoryBar(NOW, 1.0, 2.0, 0.0, 1.5, 10.0).problem() == "a price is not positive"
    assert HistoryBar(NOW, 1.0, 2.0, 0.5, 1.5, -1.0).problem() == "negative volume"
    assert HistoryBar(NOW, float("nan"), 2.0, 0.5, 1.5, 1.0).problem() == "a value is not a finite number"


def test_the_span_must_not_be_empty(instrument, binance):
    with pytest.raises(CommandError, match="nothing to fetch"):
        backfill("--source", "binance", "--symbol", "XRP/ETH", "--timeframe", "1m", "--since", UNTIL, "--until", SINCE)


def test_backfill_jobs_are_in_the_admin(admin_client, instrument, binance):
    from django.urls import reverse

    backfill(*BINANCE_ARGS)
    job = BackfillJob.objects.get()

    assert admin_client.get(reverse("admin:market_backfilljob_changelist")).status_code == 200
    assert admin_client.get(reverse("admin:market_backfilljob_change", args=[job.pk])).status_code == 200


# --- Over the API (/api/v1/backfills/) ----------------------------------------------------------------

BACKFILLS = "/api/v1/backfills/"
SPAN = {"start": "2019-10-11T00:00:00Z", "end": "2019-10-14T00:00:00Z"}


@pytest.fixture
def admin_api(make_user):
    from accounts.tests.clients import logged_in

    return logged_in(make_user("admin"))


def test_an_admin_starts_a_backfill_over_the_api_and_a_worker_stores_it(
    admin_api, instrument, binance, xrp, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        queued = admin_api.post(BACKFILLS, {"instrument": instrument.pk, **SPAN}, content_type="application/json")

    assert queued.status_code == 202, queued.json()
    assert (queued.json()["status"], queued.json()["progress"]) == ("pending", 0.0)
    job = admin_api.get(f"{BACKFILLS}{queued.json()['id']}/").json()
    assert (job["status"], job["bars"], job["pages"], job["progress"]) == ("done", 2469, 3, 1.0)
    assert (job["symbol"], job["exchange"], job["source"]) == ("XRP/ETH", "binance", "binance")
    pd.testing.assert_frame_equal(stored(instrument.pk), xrp, check_dtype=False)

    # Who started it is in the audit trail, once: the pages' progress is not
    from auditlog.models import LogEntry

    started = LogEntry.objects.get_for_object(BackfillJob.objects.get(pk=job["id"]))
    assert [(e.action, e.actor_id is not None) for e in started] == [(LogEntry.Action.CREATE, True)]
    # The same span again is the same job, done: nothing queued, nothing fetched
    requests = len(binance.requests)
    again = admin_api.post(BACKFILLS, {"instrument": instrument.pk, **SPAN}, content_type="application/json")
    assert (again.status_code, again.json()["id"]) == (200, job["id"])
    assert len(binance.requests) == requests


def test_a_failed_backfill_resumes_from_its_checkpoint_and_a_running_one_is_left_alone(
    admin_api, instrument, binance, xrp, django_capture_on_commit_callbacks
):
    job = plan_backfill(
        "binance", instrument, "1m", datetime(2019, 10, 11, tzinfo=UTC), datetime(2019, 10, 14, tzinfo=UTC), NOW
    )
    checkpoint = after(xrp, 1000).to_pydatetime()
    store_bars(minute_rows(instrument.pk, xrp.head(1000)), publish=False)
    BackfillJob.objects.filter(pk=job.pk).update(status=BackfillStatus.RUNNING, cursor=checkpoint, pages=1, bars=1000)

    busy = admin_api.post(f"{BACKFILLS}{job.pk}/resume/")
    # A running job whose worker died long ago (no checkpoint for an hour) may be taken over
    BackfillJob.objects.filter(pk=job.pk).update(updated_at=datetime.now(UTC) - pd.Timedelta(hours=1))
    with django_capture_on_commit_callbacks(execute=True):
        resumed = admin_api.post(f"{BACKFILLS}{job.pk}/resume/")

    assert busy.status_code == 409
    assert busy.json()["error"]["code"] == "running"
    assert resumed.status_code == 202
    klines = binance.paths("/api/v3/klines")
    assert [int(q["startTime"]) for q in klines] == [ms(after(xrp, 1000)), ms(after(xrp, 2000))]
    assert BackfillJob.objects.get(pk=job.pk).status == BackfillStatus.DONE
    pd.testing.assert_frame_equal(stored(instrument.pk), xrp, check_dtype=False)


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"instrument": 999999, **SPAN}, "instrument", "object does not exist"),
        ({"instrument": "{instrument}", "start": SPAN["end"], "end": SPAN["start"]}, "end", "end must be after start"),
        ({"instrument": "{instrument}", "timeframe": "2m", **SPAN}, "timeframe", "not a valid choice"),
        ({"instrument": "{elsewhere}", **SPAN}, "instrument", "no history source for exchange 'kraken'"),
    ],
)
def test_a_backfill_that_cannot_be_done_is_a_400_that_says_why(admin_api, instrument, body, field, message):
    elsewhere = Instrument.objects.create(
        exchange=Exchange.objects.create(code="kraken", name="Kraken"), symbol="XRP/ETH"
    )
    ids = {"{instrument}": instrument.pk, "{elsewhere}": elsewhere.pk}
    body = {key: ids.get(value, value) if isinstance(value, str) else value for key, value in body.items()}

    response = admin_api.post(BACKFILLS, body, content_type="application/json")

    assert response.status_code == 400
    assert message in " ".join(response.json()["error"]["fields"][field])
    assert not BackfillJob.objects.exists()


def test_backfills_are_listed_newest_first_and_filtered(admin_api, instrument, binance):
    backfill(*BINANCE_ARGS)
    plan_backfill(
        "binance", instrument, "1h", datetime(2019, 10, 11, tzinfo=UTC), datetime(2019, 10, 12, tzinfo=UTC), NOW
    )

    everything = admin_api.get(BACKFILLS).json()["results"]
    done = admin_api.get(f"{BACKFILLS}?status=done").json()["results"]
    bad = admin_api.get(f"{BACKFILLS}?status=finished")

    assert [job["timeframe"] for job in everything] == ["1h", "1m"]
    assert [job["timeframe"] for job in done] == ["1m"]
    assert bad.status_code == 400
    assert "status" in bad.json()["error"]["fields"]

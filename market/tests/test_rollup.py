"""The incremental roll-up: real 1m bars in, the higher timeframes out, exactly, on both databases."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection

from market.barstore import BarRow
from market.groups import bars_group
from market.models import AssetClass, Bar, Exchange, Instrument, PendingRollup
from market.rollup import queue_full_rollup, roll_up
from market.rollup_plan import Span, bucket_spans, changed_spans, is_live, merge_spans, session_buckets
from market.services import store_bars
from market.sessions import sessions_between
from market.tests.broadcasts import bar_frames

LATER = datetime(2030, 1, 1, tzinfo=UTC)
OHLC = ["open", "high", "low", "close"]


def minute_rows(instrument_id: int, frame: pd.DataFrame, timeframe: str = "1m") -> list[BarRow]:
    return [
        BarRow(instrument_id, timeframe, t.to_pydatetime(), o, h, low, c, v, None, None, True)
        for t, o, h, low, c, v in zip(
            frame["date"], frame["open"], frame["high"], frame["low"], frame["close"], frame["volume"], strict=True
        )
    ]


def stored(instrument_id: int, timeframe: str) -> pd.DataFrame:
    rows = Bar.objects.filter(instrument_id=instrument_id, timeframe=timeframe).order_by("time")
    frame = pd.DataFrame.from_records(
        rows.values_list("time", "open", "high", "low", "close", "volume", "trades", "vwap", "final"),
        columns=["date", *OHLC, "volume", "trades", "vwap", "final"],
    )
    frame["date"] = pd.to_datetime(frame["date"], utc=True)
    return frame


async def receive(layer, channel: str, count: int) -> list[dict[str, Any]]:
    return [await asyncio.wait_for(layer.receive(channel), 5) for _ in range(count)]


@pytest.fixture
def xrp_1m(sample_data) -> pd.DataFrame:
    return pd.read_feather(sample_data / "freqtrade" / "XRP_ETH-1m.feather")


# --- The plan (pure) ---------------------------------------------------------------------------


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_changed_minutes_merge_into_disjoint_spans_per_instrument():
    pending = [
        (1, at("2024-01-01 00:03"), at("2024-01-01 00:03")),
        (1, at("2024-01-01 00:04"), at("2024-01-01 00:09")),
        (1, at("2024-01-01 00:30"), at("2024-01-01 00:30")),
        (2, at("2024-01-01 00:00"), at("2024-01-01 00:00")),
    ]
    assert changed_spans(pending) == [
        Span(1, at("2024-01-01 00:03"), at("2024-01-01 00:10")),
        Span(1, at("2024-01-01 00:30"), at("2024-01-01 00:31")),
        Span(2, at("2024-01-01 00:00"), at("2024-01-01 00:01")),
    ]


def test_spans_widen_to_whole_utc_buckets_and_merge_again():
    spans = [
        Span(1, at("2024-01-01 00:03"), at("2024-01-01 00:10")),
        Span(1, at("2024-01-01 00:30"), at("2024-01-01 00:31")),
    ]
    assert bucket_spans(spans, "5m") == [
        Span(1, at("2024-01-01 00:00"), at("2024-01-01 00:10")),
        Span(1, at("2024-01-01 00:30"), at("2024-01-01 00:35")),
    ]
    assert bucket_spans(spans, "1h") == [Span(1, at("2024-01-01 00:00"), at("2024-01-01 01:00"))]
    assert merge_spans([]) == []


def test_stock_daily_buckets_are_the_sessions_touched_labelled_by_date():
    # Thanksgiving 2024 (closed), then an early close at 13:00 New York time.
    spans = [Span(7, at("2024-11-28 00:00"), at("2024-11-30 00:00"))]
    buckets = session_buckets(spans, lambda start, end: sessions_between("XNYS", start, end))
    assert [(b.label, b.open, b.close) for b in buckets] == [
        (at("2024-11-29 00:00"), at("2024-11-29 14:30"), at("2024-11-29 18:00"))
    ]


def test_only_the_current_and_the_just_closed_bar_count_as_live():
    now = at("2024-01-01 10:07")
    assert is_live(at("2024-01-01 10:05"), "5m", now)
    assert is_live(at("2024-01-01 10:00"), "5m", now)
    assert not is_live(at("2024-01-01 09:55"), "5m", now)


# --- The roll-up in the database ---------------------------------------------------------------


@pytest.mark.django_db
def test_rolling_up_real_xrp_eth_1m_gives_exactly_the_freqtrade_5m_candles(instrument, sample_data, xrp_1m):
    expected = pd.read_feather(sample_data / "freqtrade" / "XRP_ETH-5m.feather")
    store_bars(minute_rows(instrument.pk, xrp_1m), publish=False)

    result = roll_up(LATER, publish=False)

    five = stored(instrument.pk, "5m")
    assert result.written["5m"] == len(expected) == 706
    pd.testing.assert_frame_equal(five[["date", *OHLC, "volume"]], expected, check_dtype=False)
    assert five["final"].all()
    assert five["trades"].isna().all()
    assert five["vwap"].isna().all()
    assert PendingRollup.objects.count() == 0


@pytest.mark.django_db
def test_higher_timeframes_equal_a_direct_rollup_of_the_1m_bars(instrument, xrp_1m):
    store_bars(minute_rows(instrument.pk, xrp_1m), publish=False)

    roll_up(LATER, publish=False)

    for timeframe, rule in [("15m", "15min"), ("1h", "1h"), ("4h", "4h"), ("1d", "1D")]:
        direct = (
            xrp_1m.set_index("date")
            .resample(rule, label="left", closed="left")
            .agg({"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"})
            .dropna()
            .reset_index()
        )
        got = stored(instrument.pk, timeframe)
        pd.testing.assert_frame_equal(got[["date", *OHLC]], direct[["date", *OHLC]], check_dtype=False)
        assert got["volume"].tolist() == pytest.approx(direct["volume"].tolist(), rel=1e-12)


@pytest.mark.django_db
def test_a_second_run_and_a_full_rebuild_change_nothing(instrument, xrp_1m):
    store_bars(minute_rows(instrument.pk, xrp_1m), publish=False)
    roll_up(LATER, publish=False)
    before = stored(instrument.pk, "1h")

    again = roll_up(LATER, publish=False)
    queue_full_rollup([instrument.pk])
    rebuilt = roll_up(LATER, publish=False)

    assert again.claimed == 0
    assert sum(again.written.values()) == 0
    assert rebuilt.claimed > 0
    assert sum(rebuilt.written.values()) == 0
    pd.testing.assert_frame_equal(stored(instrument.pk, "1h"), before)


@pytest.mark.django_db
def test_only_the_buckets_touched_since_the_last_run_are_rebuilt(instrument, xrp_1m):
    store_bars(minute_rows(instrument.pk, xrp_1m), publish=False)
    roll_up(LATER, publish=False)
    last = xrp_1m.iloc[-1]
    new_minute = last["date"] + pd.Timedelta(minutes=7)
    corrected = xrp_1m.iloc[[10]].assign(high=xrp_1m["high"].iloc[10] * 2)

    store_bars(minute_rows(instrument.pk, corrected), publish=False)
    store_bars(
        [
            BarRow(
                instrument.pk, "1m", new_minute.to_pydatetime(), 0.0015, 0.0016, 0.0015, 0.0016, 10.0, 3, 0.00155, True
            )
        ],
        publish=False,
    )
    result = roll_up(LATER, publish=False)

    # The corrected minute changes one bar per timeframe, and so does the new one (a new 5m and
    # 15m bucket, an updated 1h/4h/1d bucket).
    assert dict(result.written) == {"5m": 2, "15m": 2, "1h": 2, "4h": 2, "1d": 2}
    day = stored(instrument.pk, "1d").set_index("date")
    assert day.loc[pd.Timestamp("2019-10-11", tz="UTC"), "high"] == corrected["high"].iloc[0]
    newest = stored(instrument.pk, "5m").iloc[-1]
    assert newest["date"] == new_minute.floor("5min")
    assert (newest["trades"], newest["vwap"]) == (3, 0.00155)


@pytest.mark.django_db
def test_separate_writes_into_the_same_buckets_are_rolled_up_once(instrument, xrp_1m):
    store_bars(minute_rows(instrument.pk, xrp_1m), publish=False)
    roll_up(LATER, publish=False)
    # Two writes, each queued on its own: 00:27 and 00:29, then 00:29 again and 00:35. Widened to
    # 5m and 15m buckets their spans overlap; a bar read twice would double its volume.
    changed = xrp_1m.copy()
    for positions in ([20, 22], [22, 27]):
        changed.loc[positions, "volume"] = changed.loc[positions, "volume"] * 3 + 1
        store_bars(minute_rows(instrument.pk, changed.iloc[positions]), publish=False)
    assert PendingRollup.objects.count() == (2 if connection.vendor == "postgresql" else 4)

    result = roll_up(LATER, publish=False)

    assert dict(result.written) == {"5m": 2, "15m": 2, "1h": 1, "4h": 1, "1d": 1}
    for timeframe, rule in [("5m", "5min"), ("15m", "15min"), ("1h", "1h"), ("1d", "1D")]:
        direct = changed.set_index("date")["volume"].resample(rule, label="left", closed="left").sum()
        got = stored(instrument.pk, timeframe).set_index("date")["volume"]
        assert got.tolist() == pytest.approx(direct[direct.index.isin(got.index)].tolist(), rel=1e-12)


@pytest.mark.django_db
def test_a_bucket_stays_open_until_its_period_ends_then_closes_without_new_bars(instrument, xrp_1m):
    store_bars(minute_rows(instrument.pk, xrp_1m), publish=False)
    last = xrp_1m["date"].iloc[-1].to_pydatetime()  # 2019-10-13 11:19
    during = last + timedelta(seconds=30)

    roll_up(during, publish=False)
    hour = stored(instrument.pk, "1h").iloc[-1]
    five = stored(instrument.pk, "5m")
    assert not hour["final"]
    assert five["final"].tolist() == [True] * (len(five) - 1) + [False]

    result = roll_up(datetime(2019, 10, 13, 12, 0, 1, tzinfo=UTC), publish=False)

    assert result.claimed == 0
    assert result.finalized["1h"] == 1
    assert result.finalized["5m"] == 1
    assert result.finalized["1d"] == 0
    assert stored(instrument.pk, "1h")["final"].all()
    assert not stored(instrument.pk, "1d").iloc[-1]["final"]


@pytest.mark.django_db
def test_rolled_up_bars_at_the_live_edge_are_published_after_commit(
    instrument, xrp_1m, django_capture_on_commit_callbacks
):
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(bars_group(instrument.pk, "1h"), channel)
    store_bars(minute_rows(instrument.pk, xrp_1m), publish=False)
    now = xrp_1m["date"].iloc[-1].to_pydatetime() + timedelta(seconds=70)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        result = roll_up(now)
    # The bars cache invalidation and the broadcast wait for the commit.
    assert len(callbacks) == 2
    for callback in callbacks:
        callback()

    # One batch message for the series
    messages = async_to_sync(receive)(layer, channel, 1)
    assert [(m["type"], m["timeframe"]) for m in messages] == [("bars.update", "1h")]
    # The hour that just closed, final, and the current one, still open.
    frames = bar_frames(messages)
    hours = [(datetime.fromtimestamp(f["bar"]["time"], UTC).hour, f["bar"]["final"]) for f in frames]
    assert hours == [(10, True), (11, False)]
    # History rolled up along the way is not broadcast: only the live edge of each timeframe.
    assert result.published <= 2 * 5


@pytest.mark.django_db
def test_a_stock_daily_bar_is_the_regular_session_labelled_with_its_date(db, sample_data):
    exchange = Exchange.objects.create(code="alpaca", name="Alpaca")
    stock = Instrument.objects.create(exchange=exchange, symbol="AAPL", asset_class=AssetClass.STOCK)
    # Real 1m prices (UNITTEST/BTC) laid on the NYSE calendar around Thanksgiving 2024: every minute
    # of 2024-11-28 (closed) and 2024-11-29 (early close at 18:00 UTC), pre- and post-market included.
    prices = pd.read_feather(sample_data / "freqtrade" / "UNITTEST_BTC-1m.feather").iloc[: 2 * 1440]
    prices = prices.assign(date=pd.date_range("2024-11-28", periods=len(prices), freq="1min", tz="UTC"))
    store_bars(minute_rows(stock.pk, prices), publish=False)

    roll_up(LATER, publish=False)

    daily = stored(stock.pk, "1d")
    session = prices[(prices["date"] >= "2024-11-29 14:30") & (prices["date"] < "2024-11-29 18:00")]
    assert daily["date"].tolist() == [pd.Timestamp("2024-11-29", tz="UTC")]
    bar = daily.iloc[0]
    assert (bar["open"], bar["close"]) == (session["open"].iloc[0], session["close"].iloc[-1])
    assert (bar["high"], bar["low"]) == (session["high"].max(), session["low"].min())
    assert bar["volume"] == pytest.approx(session["volume"].sum(), rel=1e-12)
    # The intraday timeframes keep their UTC buckets, extended hours included.
    assert len(stored(stock.pk, "1h")) == 48


@pytest.mark.django_db(transaction=True)
def test_a_second_rollup_skips_while_one_is_running(instrument, xrp_1m):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite serializes writers itself; the advisory lock is PostgreSQL's")
    from django.db import connections

    store_bars(minute_rows(instrument.pk, xrp_1m.iloc[:10]), publish=False)
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [0x726F6C6C7570])
            result = roll_up(LATER, publish=False)
            cursor.execute("ROLLBACK")
    finally:
        other.close()

    assert result.busy
    assert PendingRollup.objects.count() > 0
    assert roll_up(LATER, publish=False).written["5m"] == xrp_1m["date"].iloc[:10].dt.floor("5min").nunique()


@pytest.mark.django_db
def test_the_command_rebuilds_everything_with_full(instrument, xrp_1m):
    from io import StringIO

    from django.core.management import call_command

    store_bars(minute_rows(instrument.pk, xrp_1m), publish=False)
    first, again = StringIO(), StringIO()

    call_command("rollup", "--now", "2030-01-01", "--no-publish", stdout=first)
    call_command("rollup", "--full", "--now", "2030-01-01", "--no-publish", stdout=again)

    assert "bars written: 5m 706, 15m 238, 1h 60, 4h 15, 1d 3" in first.getvalue()
    assert "Queued 3 span(s)" in again.getvalue()  # one per instrument and UTC day
    assert "bars written: none" in again.getvalue()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_thread_connections")
async def test_the_embedded_setup_rolls_up_in_process_every_interval(instrument, xrp_1m):
    from asgiref.sync import sync_to_async

    from market.rollup import roll_up_periodically

    await sync_to_async(store_bars)(minute_rows(instrument.pk, xrp_1m.head(20)), publish=False)
    runner = asyncio.create_task(roll_up_periodically(0.01))
    try:
        for _ in range(500):
            await asyncio.sleep(0.01)
            if await Bar.objects.filter(instrument=instrument, timeframe="1d").aexists():
                break
    finally:
        runner.cancel()

    assert await Bar.objects.filter(instrument=instrument, timeframe="5m").acount() == (
        xrp_1m["date"].head(20).dt.floor("5min").nunique()
    )

"""The bar store: idempotent upserts, corrections, duplicate keys, both PostgreSQL write paths and
refused bars. Runs on whichever database DATABASE_URL names (SQLite without it)."""

from __future__ import annotations

import dataclasses
import math
import pickle
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from django.db import connection

from market import barstore
from market.barstore import BarRow, InvalidBars, UpsertResult, upsert_bar_frame, upsert_bars
from market.models import Bar, Instrument, PendingRollup

pytestmark = pytest.mark.django_db

VALUE_FIELDS = ("time", "open", "high", "low", "close", "volume", "trades", "vwap", "final")


@pytest.fixture
def xrp_frame(sample_data) -> pd.DataFrame:
    """2,469 real 1m bars of XRP/ETH (freqtrade's test data), with `time` as the column name."""
    return pd.read_feather(sample_data / "freqtrade" / "XRP_ETH-1m.feather").rename(columns={"date": "time"})


@pytest.fixture
def xrp_bars(xrp_frame: pd.DataFrame, instrument: Instrument) -> list[BarRow]:
    return bars_from(xrp_frame, instrument.id)


@pytest.fixture
def other_instrument(exchange) -> Instrument:
    return Instrument.objects.create(exchange=exchange, symbol="ADA/BTC")


def bars_from(frame: pd.DataFrame, instrument_id: int) -> list[BarRow]:
    return [
        BarRow(instrument_id, "1m", time.to_pydatetime(), open_, high, low, close, volume, None, None, True)
        for time, open_, high, low, close, volume in frame[
            ["time", "open", "high", "low", "close", "volume"]
        ].itertuples(index=False)
    ]


def stored(instrument_id: int) -> list[tuple[Any, ...]]:
    """The stored bars of one instrument's 1m series, in time order."""
    return list(Bar.objects.for_series(instrument_id, "1m").order_by("time").values_list(*VALUE_FIELDS))


def row_versions() -> list[tuple[Any, ...]]:
    """Where each stored row version lives and which transaction wrote it: a write changes them."""
    with connection.cursor() as cursor:
        cursor.execute(
            'SELECT instrument_id, timeframe, "time", ctid::text, xmin::text FROM market_bar ORDER BY 1, 2, 3'
        )
        return cursor.fetchall()


def on_postgresql() -> bool:
    return connection.vendor == "postgresql"


# --- Writing and counting -------------------------------------------------------------------------


def test_it_inserts_new_bars(xrp_bars, instrument):
    result = upsert_bars(xrp_bars)

    assert result == UpsertResult(inserted=2469, updated=0, unchanged=0)
    first = stored(instrument.id)[0]
    assert first[0] == datetime(2019, 10, 11, tzinfo=UTC)
    assert first[1:5] == (xrp_bars[0].open, xrp_bars[0].high, xrp_bars[0].low, xrp_bars[0].close)


def test_it_writes_nothing_when_the_same_bars_come_again(xrp_bars, instrument):
    upsert_bars(xrp_bars)
    before, versions = stored(instrument.id), row_versions() if on_postgresql() else None

    result = upsert_bars(xrp_bars)

    assert result == UpsertResult(inserted=0, updated=0, unchanged=2469)
    assert stored(instrument.id) == before
    if on_postgresql():  # not even a new row version or a row lock: same place, same writer
        assert row_versions() == versions


def test_it_replaces_a_corrected_bar(xrp_bars, instrument):
    upsert_bars(xrp_bars)
    corrected = xrp_bars[100]._replace(volume=xrp_bars[100].volume + 1, trades=42, vwap=xrp_bars[100].close)

    result = upsert_bars([*xrp_bars[:100], corrected, *xrp_bars[101:]])

    assert result == UpsertResult(inserted=0, updated=1, unchanged=2468)
    bar = Bar.objects.get(instrument=instrument, timeframe="1m", time=corrected.time)
    assert (bar.volume, bar.trades, bar.vwap) == (corrected.volume, 42, corrected.close)
    assert Bar.objects.count() == 2469


def test_it_counts_new_changed_and_identical_bars_in_one_batch(xrp_bars, instrument):
    # given bars 0..199 stored except bar 50 (a gap before the newest stored bar)
    upsert_bars(xrp_bars[:50] + xrp_bars[51:200])
    changed = xrp_bars[10]._replace(final=False)

    # when bars 0..249 come with bar 10 changed
    result = upsert_bars([*xrp_bars[:10], changed, *xrp_bars[11:250]])

    # then the gap and the 50 bars after the newest are inserted, bar 10 updated, the rest untouched
    assert result == UpsertResult(inserted=51, updated=1, unchanged=198)
    assert stored(instrument.id) == stored_form([*xrp_bars[:10], changed, *xrp_bars[11:250]])


def test_it_names_the_bars_it_wrote_when_asked(xrp_bars, instrument):
    upsert_bars(xrp_bars[:50] + xrp_bars[51:200])
    changed = xrp_bars[10]._replace(volume=xrp_bars[10].volume + 1)

    result = upsert_bars([*xrp_bars[:10], changed, *xrp_bars[11:250]], report_written=True)

    # the gap (bar 50), the corrected bar 10 and the 50 bars after the newest; none of the identical ones
    wrote = [position for position, row in enumerate([*xrp_bars[:10], changed, *xrp_bars[11:250]]) if result.wrote(row)]
    assert wrote == [10, 50, *range(200, 250)]
    assert len(result.written) == result.inserted + result.updated == 52


def test_it_names_nothing_when_the_same_bars_come_again(xrp_bars):
    upsert_bars(xrp_bars[:20])

    result = upsert_bars(xrp_bars[:20], report_written=True)

    assert result.written == frozenset()
    assert not any(result.wrote(row) for row in xrp_bars[:20])


def test_written_keys_are_per_series(xrp_bars, instrument, other_instrument):
    # the same minutes of two instruments: storing one series must not hide the other's new bars
    others = [row._replace(instrument_id=other_instrument.id) for row in xrp_bars[:5]]
    upsert_bars(xrp_bars[:5])

    result = upsert_bars([*xrp_bars[:5], *others], report_written=True)

    assert [result.wrote(row) for row in [*xrp_bars[:5], *others]] == [False] * 5 + [True] * 5


def test_it_keeps_the_last_of_several_bars_with_the_same_key_in_one_batch(xrp_bars, instrument):
    first, second = xrp_bars[5]._replace(volume=1.0), xrp_bars[5]._replace(volume=2.0)

    result = upsert_bars([first, *xrp_bars[:5], second, first._replace(volume=3.0), xrp_bars[6]])

    assert result == UpsertResult(inserted=7, updated=0, unchanged=2)
    assert Bar.objects.get(instrument=instrument, time=first.time).volume == 3.0
    assert stored(instrument.id) == stored_form([*xrp_bars[:5], first._replace(volume=3.0), xrp_bars[6]])


def test_it_keeps_the_last_duplicate_when_it_updates_a_stored_bar(xrp_bars, instrument):
    upsert_bars(xrp_bars[:10])

    result = upsert_bars([xrp_bars[3]._replace(volume=7.0), xrp_bars[3]])

    assert result == UpsertResult(inserted=0, updated=0, unchanged=2)
    assert stored(instrument.id) == stored_form(xrp_bars[:10])


def test_it_stores_the_same_bars_whether_appended_or_upserted(xrp_frame, instrument, other_instrument, monkeypatch):
    appended, upserted = bars_from(xrp_frame, instrument.id), bars_from(xrp_frame, other_instrument.id)
    paths = spy_on_write_paths(monkeypatch)

    # given one series written in one go (all bars after the newest stored: the append path) ...
    upsert_bars(appended)
    # ... and the same bars for another series, the second half first, then everything (overlap)
    upsert_bars(upserted[1200:])
    result = upsert_bars(upserted)

    assert result == UpsertResult(inserted=1200, updated=0, unchanged=1269)
    assert stored(instrument.id) == stored(other_instrument.id)
    if on_postgresql():
        assert paths == ["append", "append", "staging"]


def test_it_upserts_when_another_writer_stored_a_new_key_first(xrp_bars, instrument, monkeypatch):
    # given a bar stored that the append check does not see (as if written after it looked)
    upsert_bars(xrp_bars[:1])
    blind_to_stored_bars(monkeypatch)
    paths = spy_on_write_paths(monkeypatch)

    result = upsert_bars(xrp_bars[:100])

    assert result == UpsertResult(inserted=99, updated=0, unchanged=1)
    assert stored(instrument.id) == stored_form(xrp_bars[:100])
    if on_postgresql():  # the COPY hit the unique index, was rolled back, and the upsert took over
        assert paths == ["append", "staging"]


def test_it_stores_trades_vwap_and_unknowns(xrp_bars, instrument):
    known = xrp_bars[0]._replace(trades=12, vwap=xrp_bars[0].low, final=False)
    unknown = xrp_bars[1]._replace(trades=None, vwap=float("nan"))

    upsert_bars([known, unknown])

    assert [bar[6:] for bar in stored(instrument.id)] == [(12, known.low, False), (None, None, True)]


def test_it_treats_a_bar_saved_by_the_orm_as_the_same_bar(xrp_bars, instrument):
    Bar.objects.create(**xrp_bars[0]._asdict())

    result = upsert_bars(xrp_bars[:2])

    assert result == UpsertResult(inserted=1, updated=0, unchanged=1)
    assert Bar.objects.count() == 2


def test_it_stores_a_frame_like_the_same_bars_as_rows(xrp_frame, xrp_bars, instrument, other_instrument):
    upsert_bars(xrp_bars)

    result = upsert_bar_frame(xrp_frame, instrument_id=other_instrument.id, timeframe="1m")

    assert result == UpsertResult(inserted=2469, updated=0, unchanged=0)
    assert stored(other_instrument.id) == stored(instrument.id)
    assert upsert_bar_frame(xrp_frame, instrument_id=other_instrument.id, timeframe="1m").unchanged == 2469


def test_it_takes_instrument_and_timeframe_from_frame_columns(xrp_frame, instrument):
    frame = xrp_frame.head(3).assign(instrument_id=instrument.id, timeframe="1m", trades=[1, None, 3])

    result = upsert_bar_frame(frame)

    assert result.inserted == 3
    assert [bar[6] for bar in stored(instrument.id)] == [1, None, 3]


def test_it_accepts_an_empty_batch(xrp_frame):
    assert upsert_bars([]) == UpsertResult()
    assert upsert_bar_frame(xrp_frame.head(0), instrument_id=1, timeframe="1m") == UpsertResult()


# --- Refusing bad bars ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"high": 0.0001, "low": 0.0002, "open": 0.0002, "close": 0.0002}, "high is below low"),
        ({"low": 0.0, "open": 0.0, "close": 0.0}, "low must be above 0"),
        ({"open": 1.0}, "open is outside [low, high]"),
        ({"close": 0.00000001}, "close is outside [low, high]"),
        ({"volume": -1.0}, "volume is negative"),
        ({"close": math.nan}, "prices and volume must be finite"),
        ({"trades": -3}, "trades must be a whole number"),
    ],
)
def test_it_rejects_a_batch_with_an_invalid_bar_and_writes_nothing(xrp_bars, change, reason):
    batch = [*xrp_bars[:10], xrp_bars[10]._replace(**change), *xrp_bars[11:20]]

    with pytest.raises(InvalidBars, match=r"1 of 20 bars rejected, nothing written: bar 10 \(instrument") as caught:
        upsert_bars(batch)

    assert reason in str(caught.value)
    assert xrp_bars[10].time.isoformat() in str(caught.value)
    assert Bar.objects.count() == 0


def test_it_names_every_offending_bar_up_to_a_limit(xrp_bars):
    batch = [bar._replace(volume=-1.0) for bar in xrp_bars[:25]]

    with pytest.raises(InvalidBars, match=r"25 of 25 bars rejected.*; and 15 more$") as caught:
        upsert_bars(batch)

    assert caught.value.offending == 25
    assert len(caught.value.problems) == 10


def test_it_raises_a_rejection_that_survives_pickling(xrp_bars):
    with pytest.raises(InvalidBars) as caught:
        upsert_bars([xrp_bars[0]._replace(volume=-1.0)])

    copy = pickle.loads(pickle.dumps(caught.value))

    assert (str(copy), copy.problems, copy.offending) == (str(caught.value), caught.value.problems, 1)


def test_it_rejects_naive_times(xrp_bars):
    naive = xrp_bars[1]._replace(time=xrp_bars[1].time.replace(tzinfo=None))

    with pytest.raises(InvalidBars, match=r"bar 1 .*time must be a timezone-aware datetime"):
        upsert_bars([xrp_bars[0], naive])
    assert Bar.objects.count() == 0


def test_it_rejects_a_frame_with_naive_times(xrp_frame, instrument):
    naive = xrp_frame.assign(time=xrp_frame["time"].dt.tz_localize(None))

    with pytest.raises(InvalidBars, match="it must be timezone-aware"):
        upsert_bar_frame(naive, instrument_id=instrument.id, timeframe="1m")


def test_it_rejects_an_unknown_timeframe(xrp_bars):
    with pytest.raises(InvalidBars, match="bar 1: unknown timeframe '2m'"):
        upsert_bars([xrp_bars[0], xrp_bars[1]._replace(timeframe="2m")])
    assert Bar.objects.count() == 0


def test_it_rejects_bars_of_an_instrument_that_does_not_exist(xrp_bars, instrument):
    missing_id = instrument.id + 1000

    with pytest.raises(InvalidBars, match=f"bar 1 \\(instrument {missing_id} .*no such instrument"):
        upsert_bars([xrp_bars[0], xrp_bars[1]._replace(instrument_id=missing_id)])
    assert Bar.objects.count() == 0


def test_a_refused_instrument_leaves_the_callers_transaction_usable(xrp_bars, instrument):
    # Given a caller's transaction in which one write names an instrument that does not exist
    from django.db import transaction

    with transaction.atomic():
        with pytest.raises(InvalidBars, match="no such instrument"):
            upsert_bars([xrp_bars[0]._replace(instrument_id=instrument.id + 1000), xrp_bars[1]])
        # When the caller goes on writing in the same transaction
        result = upsert_bars(xrp_bars[:3])

    # Then that write counts and is stored, and nothing of the refused one is
    assert result == UpsertResult(inserted=3)
    assert Bar.objects.count() == 3


def test_it_moves_a_time_in_another_zone_to_utc(xrp_bars, instrument):
    elsewhere = xrp_bars[0].time.astimezone(ZoneInfo("America/New_York"))

    upsert_bars([xrp_bars[0]._replace(time=elsewhere)])

    assert stored(instrument.id)[0][0] == xrp_bars[0].time


# --- Big batches of rows, streamed in pieces into one COPY (PostgreSQL) ------------------------------

only_postgresql = pytest.mark.skipif(connection.vendor != "postgresql", reason="the streamed COPY is PostgreSQL's")


@pytest.fixture
def in_pieces(monkeypatch) -> list[bool]:
    """Batches of rows stream in pieces of 100 bars; records, per write, whether it streamed."""
    monkeypatch.setattr(barstore, "_PIECE_ROWS", 100)
    monkeypatch.setattr(barstore, "_STREAM_AT_LEAST", 1)
    streamed: list[bool] = []
    stream = barstore._append_streaming

    def spy(*args):
        result = stream(*args)
        streamed.append(result is not None)
        return result

    monkeypatch.setattr(barstore, "_append_streaming", spy)
    return streamed


def in_key_order(rows: list[BarRow]) -> list[BarRow]:
    return sorted(rows, key=lambda row: (row.instrument_id, barstore.TIMEFRAME_NAMES.index(row.timeframe), row.time))


@only_postgresql
@pytest.mark.parametrize("report_written", [False, True])
def test_a_batch_streamed_in_pieces_stores_every_bar(xrp_bars, instrument, in_pieces, report_written):
    result = upsert_bars(xrp_bars, report_written=report_written)

    assert in_pieces == [True]
    assert (result.inserted, result.updated, result.unchanged) == (len(xrp_bars), 0, 0)
    assert stored(instrument.id) == stored_form(xrp_bars)
    assert len(result.written) == (len(xrp_bars) if report_written else 0)
    assert all(result.wrote(bar) for bar in xrp_bars) == report_written


def moved_later(bars: list[BarRow]) -> list[BarRow]:
    return [*bars[:700], *bars[701:760], bars[700], *bars[760:]]


def with_a_duplicate(bars: list[BarRow]) -> list[BarRow]:
    return [*bars[:900], bars[899]._replace(volume=9.0), *bars[900:]]


def overlapping_another_series(bars: list[BarRow]) -> list[BarRow]:
    """The bars, then the other instrument's from its 30th bar on: it has bars 0 to 39 stored."""
    other_id = Instrument.objects.get(symbol="ADA/BTC").pk
    return [*bars, *(bar._replace(instrument_id=other_id) for bar in bars[30:])]


@only_postgresql
@pytest.mark.parametrize("spoil", [moved_later, with_a_duplicate, overlapping_another_series])
def test_a_batch_that_is_not_all_new_bars_in_key_order_takes_the_general_path(
    xrp_bars, instrument, other_instrument, in_pieces, spoil
):
    # Given the other instrument's first 40 bars stored, and a batch that is not all new bars in
    # key order: found past its first piece (out of order, duplicate) or before the COPY (overlap)
    first_stored = [bar._replace(instrument_id=other_instrument.pk) for bar in xrp_bars[:40]]
    upsert_bars(first_stored)
    in_pieces.clear()
    batch = spoil(xrp_bars)

    result = upsert_bars(batch)

    # Then the streamed COPY (if begun) was taken back and the general path stored every bar once,
    # the last of a key winning, with nothing counted twice
    assert in_pieces == [False]
    last_of_key = {(bar.instrument_id, bar.time): bar for bar in batch}
    stored_keys = {(bar.instrument_id, bar.time) for bar in first_stored}
    assert result.inserted + result.updated + result.unchanged == len(batch)
    assert result.inserted == len(last_of_key.keys() - stored_keys)
    ours = [bar for bar in last_of_key.values() if bar.instrument_id == instrument.pk]
    assert stored(instrument.id) == stored_form(ours)
    assert Bar.objects.count() == len(last_of_key.keys() | stored_keys)


@only_postgresql
def test_a_batch_with_another_timeframe_past_its_first_piece_takes_the_general_path(xrp_bars, instrument, in_pieces):
    # Given one instrument's 1m bars followed, in key order, by some of its 1h bars, later than
    # them: a series is taken to be of its first row's timeframe, and only a later piece sees the other
    after = xrp_bars[-1].time
    hourly = [bar._replace(timeframe="1h", time=after + timedelta(hours=1 + n)) for n, bar in enumerate(xrp_bars[:300])]

    result = upsert_bars([*xrp_bars, *hourly])

    # Then the COPY was taken back and the general path stored both series
    assert in_pieces == [False]
    assert result == UpsertResult(inserted=len(xrp_bars) + len(hourly))
    assert Bar.objects.filter(timeframe="1m").count() == len(xrp_bars)
    assert Bar.objects.filter(timeframe="1h").count() == len(hourly)


@only_postgresql
def test_an_invalid_bar_in_a_later_piece_is_named_by_its_place_in_the_batch(xrp_bars, in_pieces):
    batch = [*xrp_bars[:450], xrp_bars[450]._replace(volume=-1.0), *xrp_bars[451:]]

    with pytest.raises(InvalidBars, match=r"^1 of 2469 bars rejected, nothing written: bar 450 \(instrument"):
        upsert_bars(batch)

    assert in_pieces == [False]
    assert Bar.objects.count() == PendingRollup.objects.count() == 0


@only_postgresql
def test_a_naive_time_in_a_later_piece_is_named_by_its_place_in_the_batch(xrp_bars, in_pieces):
    batch = [*xrp_bars[:321], xrp_bars[321]._replace(time=xrp_bars[321].time.replace(tzinfo=None)), *xrp_bars[322:]]

    with pytest.raises(InvalidBars, match=r"bar 321 .*time must be a timezone-aware datetime"):
        upsert_bars(batch)
    assert Bar.objects.count() == 0


@only_postgresql
def test_a_streamed_batch_of_an_unknown_instrument_is_refused(xrp_bars, instrument, in_pieces):
    with pytest.raises(InvalidBars, match="no such instrument"):
        upsert_bars([bar._replace(instrument_id=instrument.id + 1000) for bar in xrp_bars])
    assert Bar.objects.count() == 0


@only_postgresql
def test_a_streamed_batch_upserts_when_another_writer_stored_a_new_key_first(
    xrp_bars, instrument, in_pieces, monkeypatch
):
    # Given a bar stored that the append check does not see (as if written after it looked), and
    # a store that notes the roll-up spans of its appends itself
    upsert_bars(xrp_bars[700:701])
    PendingRollup.objects.all().delete()
    blind_to_stored_bars(monkeypatch)
    monkeypatch.setattr(barstore, "_NOTE_ITSELF_AT_LEAST", 1)

    result = upsert_bars(xrp_bars)

    # Then the COPY hit the unique index in a later piece, was taken back, and the upsert took over
    assert result == UpsertResult(inserted=len(xrp_bars) - 1, updated=0, unchanged=1)
    assert stored(instrument.id) == stored_form(xrp_bars)
    # and the roll-up trigger noted the upsert: the store's own notes went with the COPY
    assert pending_spans() == daily_spans(instrument.pk, [*xrp_bars[:700], *xrp_bars[701:]])


# --- The pure core --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "times",
    [
        [datetime(2024, 1, 1, 0, 1, 2, 345678, tzinfo=UTC), datetime(1969, 12, 31, 23, 59, tzinfo=UTC)],
        [datetime(2024, 3, 10, 12, tzinfo=ZoneInfo("UTC")), datetime(2024, 3, 10, 12, 1, tzinfo=UTC)],
        [pd.Timestamp("2024-01-01 00:00:00.0000015", tz="UTC"), pd.Timestamp("2024-01-01", tz="UTC")],
        [datetime(2024, 11, 3, 1, 30, fold=1, tzinfo=ZoneInfo("America/New_York")), datetime(2024, 1, 1, tzinfo=UTC)],
        [datetime(2300, 1, 1, tzinfo=UTC), datetime(1600, 1, 1, tzinfo=UTC)],
    ],
    ids=["utc", "two utc zones", "timestamps", "new york across dst", "beyond pandas' range"],
)
def test_open_times_convert_to_the_same_microseconds_in_bulk_as_one_by_one(times):
    expected = [(time - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) for time in times]

    assert barstore._microseconds(times).tolist() == expected


def test_rows_convert_to_the_columns_their_values_give(xrp_bars):
    bars = [xrp_bars[0]._replace(trades=None, vwap=None, final=False), xrp_bars[1]._replace(open=1, trades=7)]

    columns = barstore.columns_from_rows(bars)

    assert columns.open.tolist() == [bars[0].open, 1.0]
    assert columns.trades.tolist()[1] == 7.0
    assert math.isnan(columns.trades[0])
    assert math.isnan(columns.vwap[0])
    assert columns.final.tolist() == [False, True]
    assert columns.timeframe.tolist() == [barstore.TIMEFRAME_NAMES.index("1m")] * 2


def test_latest_wins_sorts_by_key_and_keeps_the_last_duplicate():
    base = datetime(2024, 1, 1, tzinfo=UTC)
    rows = [
        BarRow(2, "1m", base, 1, 1, 1, 1, 1, None, None, True),
        BarRow(1, "5m", base, 1, 1, 1, 1, 1, None, None, True),
        BarRow(1, "1m", base + timedelta(minutes=1), 1, 1, 1, 1, 1, None, None, True),
        BarRow(1, "1m", base, 1, 1, 1, 1, 1, None, None, True),
        BarRow(2, "1m", base, 1, 1, 1, 1, 9, None, None, True),
    ]

    batch = barstore.latest_wins(barstore.columns_from_rows(rows))

    assert batch.instrument_id.tolist() == [1, 1, 1, 2]
    assert [barstore.TIMEFRAME_NAMES[code] for code in batch.timeframe] == ["1m", "1m", "5m", "1m"]
    assert batch.volume.tolist() == [1, 1, 1, 9]


# --- Helpers ----------------------------------------------------------------------------------------


def stored_form(rows: list[BarRow]) -> list[tuple[Any, ...]]:
    """What `stored()` returns for these rows (NaN vwap is stored as unknown)."""
    return [
        (row.time, row.open, row.high, row.low, row.close, row.volume, row.trades, row.vwap, row.final)
        for row in sorted(rows, key=lambda row: row.time)
    ]


def spy_on_write_paths(monkeypatch) -> list[str]:
    """Record which PostgreSQL write path each part of a batch took."""
    paths: list[str] = []
    append, via_staging = barstore._append, barstore._upsert_via_staging

    def spy_append(*args):
        paths.append("append")
        return append(*args)

    def spy_staging(*args):
        paths.append("staging")
        return via_staging(*args)

    monkeypatch.setattr(barstore, "_append", spy_append)
    monkeypatch.setattr(barstore, "_upsert_via_staging", spy_staging)
    return paths


def blind_to_stored_bars(monkeypatch) -> None:
    """The store's check for stored bars sees none, as if they were written after it looked."""
    real = barstore._stored_series

    def blind(cursor, instrument_ids, codes):
        stored = real(cursor, instrument_ids, codes)
        return dataclasses.replace(stored, newest=np.full(len(instrument_ids), -(2**63)))

    monkeypatch.setattr(barstore, "_stored_series", blind)


@pytest.mark.django_db
def test_deleting_an_instrument_deletes_its_bars_without_a_database_foreign_key(instrument, exchange):
    # Given bars of two instruments (the bar table has no database-level foreign key, see models.py)
    from market.models import Instrument

    other = Instrument.objects.create(exchange=exchange, symbol="ETH/BTC")
    rows = [
        BarRow(i.pk, "1m", datetime(2019, 10, 11, tzinfo=UTC), 1.0, 2.0, 0.5, 1.5, 10.0, 3, 1.2, True)
        for i in (instrument, other)
    ]
    upsert_bars(rows)

    # When one instrument is deleted
    instrument.delete()

    # Then its bars are gone and the other's stay
    assert list(Bar.objects.values_list("instrument_id", flat=True)) == [other.pk]


# --- The roll-up's change log ---------------------------------------------------------------------


def pending_spans() -> list[tuple[int, datetime, datetime]]:
    return sorted(PendingRollup.objects.values_list("instrument_id", "first_time", "last_time"))


def daily_spans(instrument_id: int, bars: list[BarRow]) -> list[tuple[int, datetime, datetime]]:
    """One span per UTC day of the bars: what the PostgreSQL trigger notes for one statement."""
    days = sorted({bar.time.date() for bar in bars})
    return [
        (
            instrument_id,
            min(bar.time for bar in bars if bar.time.date() == day),
            max(bar.time for bar in bars if bar.time.date() == day),
        )
        for day in days
    ]


@pytest.mark.parametrize(
    "noted_by",
    [
        "the trigger",
        pytest.param("the store", marks=only_postgresql),
        pytest.param("the store, in pieces", marks=only_postgresql),
    ],
)
def test_it_notes_the_1m_bars_it_writes_for_the_rollup(xrp_bars, instrument, other_instrument, monkeypatch, noted_by):
    # Given 1m bars of two instruments over three UTC days, and an hourly bar
    other_bars = [bar._replace(instrument_id=other_instrument.pk) for bar in xrp_bars[:10]]
    hourly = xrp_bars[0]._replace(timeframe="1h")
    if noted_by != "the trigger":  # the store notes its appends itself, as it does for big ones
        monkeypatch.setattr(barstore, "_NOTE_ITSELF_AT_LEAST", 1)
    if noted_by == "the store, in pieces":  # spans cut by the pieces are noted whole
        monkeypatch.setattr(barstore, "_PIECE_ROWS", 100)
        monkeypatch.setattr(barstore, "_STREAM_AT_LEAST", 1)

    upsert_bars(in_key_order([*xrp_bars, *other_bars, hourly]))

    # Then every 1m bar lies in a span of its instrument; the hourly bar is not the roll-up's business
    spans = pending_spans()
    for bar in [*xrp_bars, *other_bars]:
        assert any(key == bar.instrument_id and first <= bar.time <= last for key, first, last in spans)
    if on_postgresql():  # one span per instrument and UTC day per statement (SQLite's trigger: one per bar)
        expected = [*daily_spans(instrument.pk, xrp_bars), *daily_spans(other_instrument.pk, other_bars)]
        assert spans == sorted(expected)


@only_postgresql
def test_writes_after_a_noted_append_are_noted_by_the_trigger(xrp_bars, instrument, monkeypatch):
    from django.db import transaction

    monkeypatch.setattr(barstore, "_NOTE_ITSELF_AT_LEAST", 100)
    with transaction.atomic():
        upsert_bars(xrp_bars[:1000])  # noted by the store
        upsert_bars(xrp_bars[1000:1010])  # small: noted by the trigger, or by the store into a partition
        Bar.objects.create(**xrp_bars[2000]._asdict())

    assert pending_spans() == sorted(
        [
            *daily_spans(instrument.pk, xrp_bars[:1000]),
            *daily_spans(instrument.pk, xrp_bars[1000:1010]),
            *daily_spans(instrument.pk, xrp_bars[2000:2001]),
        ]
    )


@pytest.mark.parametrize("noted_by", ["the trigger", pytest.param("the store", marks=only_postgresql)])
def test_bars_of_other_timeframes_alone_note_nothing(xrp_bars, monkeypatch, noted_by):
    if noted_by == "the store":
        monkeypatch.setattr(barstore, "_NOTE_ITSELF_AT_LEAST", 1)

    upsert_bars([bar._replace(timeframe="1d") for bar in xrp_bars[:3]])

    assert pending_spans() == []


def test_it_notes_corrected_bars_and_nothing_for_identical_ones(xrp_bars, instrument):
    upsert_bars(xrp_bars)
    PendingRollup.objects.all().delete()

    upsert_bars(xrp_bars)
    assert pending_spans() == []

    corrected = xrp_bars[100]._replace(volume=xrp_bars[100].volume + 1)
    upsert_bars([corrected])
    assert pending_spans() == [(instrument.pk, corrected.time, corrected.time)]


@only_postgresql
def test_on_the_partitioned_table_bars_go_into_their_timeframes_partition_and_are_noted(
    xrp_bars, instrument, monkeypatch
):
    # Given the bar table partitioned by timeframe (migration 0012, plain PostgreSQL), whose roll-up
    # trigger does not fire for writes into a partition
    copied_into: list[str] = []
    upserted_into: list[str | None] = []
    copy_into, upsert_statement = barstore._copy_into, barstore._upsert_from_staging

    def spy_copy(cursor, table, blocks):
        copied_into.append(table)
        copy_into(cursor, table, blocks)

    def spy_statement(timeframe):
        upserted_into.append(timeframe)
        return upsert_statement(timeframe)

    monkeypatch.setattr(barstore, "_copy_into", spy_copy)
    monkeypatch.setattr(barstore, "_upsert_from_staging", spy_statement)
    hourly = [bar._replace(timeframe="1h") for bar in xrp_bars[:3]]

    # When new bars of one timeframe, of another, and of both are stored
    upsert_bars(xrp_bars[:100])
    upsert_bars(hourly)
    upsert_bars([*xrp_bars[100:103], hourly[0]._replace(time=hourly[-1].time + timedelta(hours=1))])

    # Then one timeframe's bars went into its partition, noted by the store; both into the table
    assert copied_into == ["market_bar_1m", "market_bar_1h", "market_bar"]
    assert pending_spans() == sorted(
        [*daily_spans(instrument.pk, xrp_bars[:100]), *daily_spans(instrument.pk, xrp_bars[100:103])]
    )

    # And corrections of both are written into each partition by its own statement, the 1m ones noted
    PendingRollup.objects.all().delete()
    corrected = [xrp_bars[5]._replace(volume=xrp_bars[5].volume + 1), hourly[1]._replace(volume=hourly[1].volume + 1)]
    result = upsert_bars(corrected, report_written=True)

    assert result.updated == 2
    assert len(result.written) == 2
    assert all(result.wrote(bar) for bar in corrected)
    assert copied_into[3:] == ["barstore_staging"]
    assert upserted_into == ["1m", "1h"]
    assert pending_spans() == [(instrument.pk, corrected[0].time, corrected[0].time)]

"""Exports of real stored bars, imported again by `manage.py import_bars`, give back identical bars;
PostgreSQL's fast paths write and read exactly what the portable ones do."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from exports.streams import bar_chunks, copy_bar_chunks, copy_csv, count_bars, export_bytes, keyset_bar_chunks
from exports.tests.conftest import FREQTRADE, stored_bars
from exports.writers import csv_chunks
from market.models import Instrument

on_postgresql = pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's COPY path")


def export_command(path: Any, **options: Any) -> str:
    stdout = io.StringIO()
    options = {"exchange": "binance", "instrument": "UNITTEST/BTC", "timeframe": "1m", "output": str(path)} | options
    call_command("export_bars", stdout=stdout, **options)
    return stdout.getvalue()


def import_command(path: Any, symbol: str) -> Instrument:
    call_command(
        "import_bars",
        str(path),
        exchange="binance",
        symbol=symbol,
        timeframe="1m",
        create_instrument=True,
        no_progress=True,
        stdout=io.StringIO(),
    )
    return Instrument.objects.get(symbol=symbol)


@pytest.mark.parametrize("suffix", ["csv", "jsonl", "parquet"])
def test_an_exported_file_imports_back_into_identical_bars(make_series, tmp_path, suffix):
    original = make_series()
    path = tmp_path / f"bars.{suffix}"

    printed = export_command(path)
    copy = import_command(path, "COPY/BTC")

    bars = stored_bars(original)
    assert len(bars) == 13681
    assert f"{len(bars):,} bars" in printed
    assert stored_bars(copy) == bars


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_a_range_exports_the_bars_from_start_up_to_before_end(make_series, tmp_path, fmt):
    original = make_series(rows=2000)
    bars = stored_bars(original)
    start, end = bars[100][0], bars[250][0]
    path = tmp_path / f"range.{fmt}"

    export_command(path, start=start, end=end, format=fmt)
    copy = import_command(path.rename(path.with_suffix(".jsonl" if fmt == "json" else f".{fmt}")), "PART/BTC")

    assert stored_bars(copy) == bars[100:250]


def test_the_real_xrp_eth_sample_round_trips_through_csv_too(make_series, tmp_path):
    original = make_series("XRP/ETH", path=FREQTRADE / "XRP_ETH-1m.feather")
    path = tmp_path / "xrp.csv"

    export_command(path, instrument="XRP/ETH")

    assert stored_bars(import_command(path, "XRP2/ETH")) == stored_bars(original)


def test_the_command_refuses_an_unknown_instrument_and_an_unguessable_format(make_series, tmp_path):
    make_series(rows=10)

    with pytest.raises(CommandError, match="no instrument NOPE/BTC on binance"):
        export_command(tmp_path / "x.csv", instrument="NOPE/BTC")
    with pytest.raises(CommandError, match="cannot tell the format"):
        export_command(tmp_path / "x.txt")
    with pytest.raises(CommandError, match="--end must be after --start"):
        export_command(tmp_path / "x.csv", start=datetime(2024, 1, 2, tzinfo=UTC), end=datetime(2024, 1, 1, tzinfo=UTC))
    assert list(tmp_path.iterdir()) == []


def test_chunks_cover_the_range_once_in_order_whatever_their_size(make_series):
    instrument = make_series(rows=1000)
    times = [int(bar[0].timestamp()) for bar in stored_bars(instrument)]

    for size in (1, 7, 999, 1000, 5000):
        chunks = list(keyset_bar_chunks(instrument.pk, "1m", None, None, size))
        assert np.concatenate([chunk.time for chunk in chunks]).tolist() == times
    chunks = list(bar_chunks(instrument.pk, "1m", None, None, 300))
    assert np.concatenate([chunk.time for chunk in chunks]).tolist() == times


def test_counting_stops_at_the_limit_asked(make_series):
    instrument = make_series(rows=1000)
    start = datetime(2017, 11, 5, tzinfo=UTC)
    end = start + timedelta(hours=3)
    in_range = [bar for bar in stored_bars(instrument) if start <= bar[0] < end]  # the sample has gaps

    assert count_bars(instrument.pk, "1m", None, None, at_most=10_000) == 1000
    assert count_bars(instrument.pk, "1m", None, None, at_most=10) == 10
    assert count_bars(instrument.pk, "1m", start, end, at_most=10_000) == len(in_range) > 100
    assert count_bars(instrument.pk, "5m", None, None, at_most=10) == 0


@on_postgresql
def test_postgresql_writes_the_same_csv_bytes_as_the_python_writer(make_series):
    instrument = make_series()
    start, end = datetime(2017, 11, 6, tzinfo=UTC), datetime(2017, 11, 9, tzinfo=UTC)

    for bounds in ((None, None), (start, end)):
        by_copy = b"".join(copy_csv(instrument.pk, "1m", *bounds))
        by_python = b"".join(csv_chunks(keyset_bar_chunks(instrument.pk, "1m", *bounds)))
        assert by_copy.count(b"\n") > 1000
        assert by_copy == by_python


@on_postgresql
def test_postgresql_binary_copy_reads_the_same_columns_as_the_keyset_pages(make_series):
    instrument = make_series()

    by_copy = list(copy_bar_chunks(instrument.pk, "1m", None, None, chunk_rows=1000))
    by_pages = list(keyset_bar_chunks(instrument.pk, "1m", None, None, 5000))

    assert len(by_copy) > 5  # really chunked
    for name in ("time", "open", "high", "low", "close", "volume", "trades", "vwap", "final"):
        joined = [np.concatenate([getattr(chunk, name) for chunk in chunks]) for chunks in (by_copy, by_pages)]
        np.testing.assert_array_equal(joined[0], joined[1], err_msg=name)


def test_an_unknown_format_is_refused():
    with pytest.raises(ValueError, match="unknown export format"):
        export_bytes("xlsx", 1, "1m", None, None)


# Autocommit, as in a request: a COPY cancelled inside a transaction would abort the transaction.
@on_postgresql
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("copy", ["csv", "binary"])
def test_a_copy_abandoned_halfway_leaves_the_connection_usable(make_series, copy):
    instrument = make_series()
    if copy == "csv":
        pieces: Any = copy_csv(instrument.pk, "1m", None, None)
    else:
        pieces = copy_bar_chunks(instrument.pk, "1m", None, None, chunk_rows=1000)

    next(pieces), next(pieces)
    pieces.close()  # the client went away in the middle of the COPY

    assert count_bars(instrument.pk, "1m", None, None, at_most=100_000) == 13681

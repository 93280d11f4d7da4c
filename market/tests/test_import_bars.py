"""`manage.py import_bars`: real files in every format go in and come back out of the database
exactly; bad rows are reported by position and reason and, by default, stop the whole import."""

from __future__ import annotations

import gzip
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError

from market import services
from market.models import Bar, Exchange, Instrument
from market.services import utc_from_ms
from market.tests.test_importers import epoch_ms_csv, iso_from_ms

SAMPLE_DATA = Path(__file__).resolve().parents[2] / "sample_data"
FREQTRADE = SAMPLE_DATA / "freqtrade"
BTC_JSON = FREQTRADE / "UNITTEST_BTC-1m.json"
XRP_FEATHER = FREQTRADE / "XRP_ETH-1m.feather"
COLUMNS = ("time", "open", "high", "low", "close", "volume", "trades", "vwap")


@dataclass
class Run:
    stdout: str
    stderr: str
    error: str | None

    def report(self, path: Path) -> dict[str, int]:
        """The counts printed for one file: read, inserted, updated, unchanged, rejected."""
        line = re.search(rf"^{re.escape(str(path))}: (read .*)$", self.stdout, re.MULTILINE)
        assert line, self.stdout
        return {name: int(count.replace(",", "")) for name, count in re.findall(r"(\w+) ([\d,]+)", line.group(1))}


def import_bars(*files: Path, **options) -> Run:
    stdout, stderr = io.StringIO(), io.StringIO()
    options = {"exchange": "binance", "symbol": "XRP/ETH", "timeframe": "1m", "no_progress": True} | options
    try:
        call_command("import_bars", *map(str, files), stdout=stdout, stderr=stderr, **options)
    except CommandError as exc:
        return Run(stdout.getvalue(), stderr.getvalue(), str(exc))
    return Run(stdout.getvalue(), stderr.getvalue(), None)


Bars = list[tuple[object, ...]]


def stored_bars(symbol: str = "XRP/ETH", timeframe: str = "1m") -> Bars:
    bars = Bar.objects.filter(instrument__symbol=symbol, timeframe=timeframe).order_by("time")
    return list(bars.values_list(*COLUMNS))


def feather_bars(path: Path) -> Bars:
    frame = pd.read_feather(path)
    times = [time.to_pydatetime() for time in frame["date"]]
    values = zip(*(frame[name].tolist() for name in ("open", "high", "low", "close", "volume")), strict=True)
    return [(time, *ohlcv, None, None) for time, ohlcv in zip(times, values, strict=True)]


def json_bars(path: Path) -> Bars:
    rows = json.loads(path.read_text())
    return [(utc_from_ms(ms), *map(float, values), None, None) for ms, *values in rows]


# --- Round trips ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_stores_the_real_freqtrade_json_exactly(exchange):
    # Given freqtrade's JSON of 13,681 real BTC 1m candles and no instrument for them yet
    # When it is imported, creating the instrument
    run = import_bars(BTC_JSON, symbol="UNITTEST/BTC", create_instrument=True)

    # Then every candle is stored exactly as in the file, and the report says so
    assert run.error is None
    assert stored_bars("UNITTEST/BTC") == json_bars(BTC_JSON)
    assert run.report(BTC_JSON) == {"read": 13_681, "inserted": 13_681, "updated": 0, "unchanged": 0, "rejected": 0}
    assert Instrument.objects.get(symbol="UNITTEST/BTC").exchange == exchange


@pytest.mark.django_db
def test_it_stores_gzipped_json_exactly(instrument, tmp_path):
    path = tmp_path / "UNITTEST_BTC-1m.json.gz"
    path.write_bytes(gzip.compress(BTC_JSON.read_bytes()))

    run = import_bars(path)

    assert run.error is None
    assert stored_bars() == json_bars(BTC_JSON)


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "timeframe"), [("XRP_ETH-1m.feather", "1m"), ("ADA_BTC-5m.feather", "5m")])
def test_it_stores_real_feather_files_exactly(instrument, name, timeframe):
    run = import_bars(FREQTRADE / name, timeframe=timeframe)

    assert run.error is None
    assert stored_bars(timeframe=timeframe) == feather_bars(FREQTRADE / name)


@pytest.mark.django_db
def test_it_stores_parquet_exactly(instrument, tmp_path):
    path = tmp_path / "XRP_ETH-1m.parquet"
    pd.read_feather(XRP_FEATHER).to_parquet(path)

    run = import_bars(path)

    assert run.error is None
    assert stored_bars() == feather_bars(XRP_FEATHER)


@pytest.mark.django_db
def test_it_stores_a_real_csv_exactly_whatever_its_column_order(instrument):
    # Given jesse's real SOL/USDT CSV: timestamp (ms), open, close, high, low, volume; CRLF line ends
    path = SAMPLE_DATA / "jesse" / "test_candles_sol.csv"
    source = pd.read_csv(path)
    times = [utc_from_ms(ms) for ms in source["timestamp"].tolist()]
    values = zip(*(source[name].tolist() for name in ("open", "high", "low", "close", "volume")), strict=True)

    run = import_bars(path)

    assert run.error is None
    assert stored_bars() == [(time, *ohlcv, None, None) for time, ohlcv in zip(times, values, strict=True)]


@pytest.mark.django_db
def test_it_stores_trades_and_vwap_from_a_csv_with_iso_times(instrument, tmp_path):
    # Given 1m bars with trade counts and VWAP built from real trades, with ISO-8601 times
    trades = pd.read_feather(FREQTRADE / "XRP_ETH-trades.feather")
    minute = pd.to_datetime(trades["timestamp"] // 60_000 * 60_000, unit="ms", utc=True)
    groups = trades.assign(time=minute, notional=trades["price"] * trades["amount"]).groupby("time")
    bars = groups.agg(
        open=("price", "first"),
        high=("price", "max"),
        low=("price", "min"),
        close=("price", "last"),
        volume=("amount", "sum"),
        trades=("price", "size"),
        notional=("notional", "sum"),
    ).reset_index()
    bars["vwap"] = bars.pop("notional") / bars["volume"]
    path = tmp_path / "bars.csv"
    bars.assign(time=bars["time"].map(lambda t: t.isoformat())).to_csv(path, index=False)

    # When it is imported
    run = import_bars(path)

    # Then the bars, trade counts and VWAPs come back exactly
    assert run.error is None
    times = [time.to_pydatetime() for time in bars["time"]]
    columns = ("open", "high", "low", "close", "volume", "trades", "vwap")
    values = zip(*(bars[name].tolist() for name in columns), strict=True)
    assert stored_bars() == [(time, *row) for time, row in zip(times, values, strict=True)]


# --- Bad rows -------------------------------------------------------------------------------


def defective_csv(tmp_path: Path) -> tuple[Path, dict[int, str]]:
    """Real XRP/ETH candles as CSV with five spoiled rows; the expected reasons by CSV line."""
    csv = epoch_ms_csv()
    swapped = next(line for line in range(2, csv.last) if float(csv.get(line, "high")) > float(csv.get(line, "low")))
    high, low = csv.get(swapped, "high"), csv.get(swapped, "low")
    csv.set(swapped, "high", low)
    csv.set(swapped, "low", high)
    csv.set(22, "volume", "-2.5")
    csv.set(32, "close", "n.a.")
    late = str(int(csv.get(42, "timestamp")) + 1_000)
    csv.set(42, "timestamp", late)
    csv.set(2002, "low", "0")
    expected = {
        swapped: f"high {float(low)} is below low {float(high)}",
        22: "volume -2.5 is negative",
        32: "close 'n.a.' is not a number",
        42: f"time {iso_from_ms(late)} is not the start of a 1m bar (UTC)",
        2002: "low 0 is not positive",
    }
    return csv.write(tmp_path / "defective.csv"), expected


@pytest.mark.django_db
def test_it_reports_every_bad_row_by_line_and_reason_and_writes_nothing(instrument, tmp_path):
    # Given real candles with five spoiled rows
    path, expected = defective_csv(tmp_path)

    # When they are imported without --skip-bad-rows
    run = import_bars(path)

    # Then each bad row is listed with its line and reason, the command fails and nothing is stored
    for line, reason in expected.items():
        assert f"  line {line}: {reason}\n" in run.stdout
    assert f"{path}: 2,469 rows, times read as epoch milliseconds: 2,464 good, 5 rejected" in run.stdout
    assert run.error is not None
    assert "5 bad row(s)" in run.error
    assert "nothing was written" in run.error
    assert stored_bars() == []


@pytest.mark.django_db
def test_it_imports_exactly_the_good_rows_with_skip_bad_rows(instrument, tmp_path):
    path, expected = defective_csv(tmp_path)

    run = import_bars(path, skip_bad_rows=True)

    assert run.error is None
    for line, reason in expected.items():
        assert f"  line {line}: {reason}\n" in run.stdout
    good = [bar for row, bar in enumerate(feather_bars(XRP_FEATHER)) if row + 2 not in expected]
    assert stored_bars() == good
    assert run.report(path) == {"read": 2_469, "inserted": 2_464, "updated": 0, "unchanged": 0, "rejected": 5}


@pytest.mark.django_db
def test_it_caps_the_list_of_bad_rows_and_counts_the_rest(instrument, tmp_path):
    path, _ = defective_csv(tmp_path)

    run = import_bars(path, show_rejected=2)

    assert run.stdout.count("  line ") == 2
    assert "  ... and 3 more rejected row(s); --show-rejected 0 lists them all" in run.stdout


@pytest.mark.django_db
def test_it_writes_nothing_from_any_file_when_one_of_them_has_bad_rows(instrument, tmp_path):
    path, _ = defective_csv(tmp_path)

    run = import_bars(BTC_JSON, path)

    assert run.error is not None
    assert f"in {path} (5)" in run.error
    assert Bar.objects.count() == 0


@pytest.mark.django_db
def test_it_names_a_file_it_cannot_read_and_writes_nothing(instrument, tmp_path):
    # Given a good file, a missing one and a text file posing as Parquet
    fake = tmp_path / "bars.parquet"
    fake.write_text("time,open,high,low,close,volume\n")
    missing = tmp_path / "missing.csv"

    run = import_bars(XRP_FEATHER, missing, fake)

    assert run.error is not None
    assert f"{missing}: no such file" in run.error
    assert f"{fake}: cannot read it as parquet" in run.error
    assert "Traceback" not in run.error + run.stderr
    assert Bar.objects.count() == 0


@pytest.mark.django_db
def test_it_rolls_back_the_whole_file_when_a_later_batch_fails(instrument, monkeypatch):
    # Given a store that refuses the third batch of a file
    calls = []

    def store_bar_frame(frame, *, instrument_id, timeframe):
        calls.append(len(frame))
        if len(calls) == 3:
            raise DatabaseError("refused")
        return services.store_bar_frame(frame, instrument_id=instrument_id, timeframe=timeframe)

    monkeypatch.setattr("market.management.commands.import_bars.store_bar_frame", store_bar_frame)

    # When a file of 2,469 bars is imported 1,000 at a time
    run = import_bars(XRP_FEATHER, batch_size=1_000)

    # Then the error names the file and the batches already stored were rolled back
    assert calls == [1_000, 1_000, 469]
    assert run.error == f"{XRP_FEATHER}: the database refused the bars, nothing from this file was written: refused"
    assert Bar.objects.count() == 0


# --- Idempotence, dry run, instruments ------------------------------------------------------


@pytest.mark.django_db
def test_it_inserts_nothing_the_second_time_the_same_file_is_imported(instrument):
    first = import_bars(XRP_FEATHER, batch_size=1_000)

    second = import_bars(XRP_FEATHER, batch_size=1_000)

    assert first.report(XRP_FEATHER)["inserted"] == 2_469
    assert second.report(XRP_FEATHER) == {"read": 2_469, "inserted": 0, "updated": 0, "unchanged": 2_469, "rejected": 0}
    assert stored_bars() == feather_bars(XRP_FEATHER)


@pytest.mark.django_db
def test_a_dry_run_checks_and_reports_but_writes_nothing(exchange, tmp_path):
    path, _ = defective_csv(tmp_path)

    run = import_bars(path, symbol="NEW/ETH", create_instrument=True, dry_run=True, skip_bad_rows=True)

    assert run.error is None
    assert "  line 22: volume -2.5 is negative" in run.stdout
    assert "Would create instrument NEW/ETH on binance." in run.stdout
    assert "Dry run: 2,464 bar(s) would be imported, 5 rejected; nothing written." in run.stdout
    assert Bar.objects.count() == 0
    assert not Instrument.objects.filter(symbol="NEW/ETH").exists()


@pytest.mark.django_db
def test_a_dry_run_still_fails_on_bad_rows(instrument, tmp_path):
    path, _ = defective_csv(tmp_path)

    run = import_bars(path, dry_run=True)

    assert run.error is not None
    assert "nothing was written (dry run)" in run.error


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("exchange_code", "symbol", "message"),
    [
        ("kraken", "XRP/ETH", "unknown exchange 'kraken' (known: binance); --create-instrument creates it"),
        ("binance", "DOGE/ETH", "no instrument 'DOGE/ETH' on binance; --create-instrument creates it"),
    ],
)
def test_it_refuses_an_unknown_exchange_or_instrument(instrument, exchange_code, symbol, message):
    run = import_bars(XRP_FEATHER, exchange=exchange_code, symbol=symbol)

    assert run.error == message
    assert Bar.objects.count() == 0


@pytest.mark.django_db
def test_it_creates_the_exchange_and_instrument_when_asked():
    run = import_bars(XRP_FEATHER, exchange="kraken", symbol="XRP/ETH", create_instrument=True)

    assert run.error is None
    instrument = Instrument.objects.get(exchange__code="kraken", symbol="XRP/ETH")
    assert (instrument.base, instrument.quote) == ("XRP", "ETH")
    assert Exchange.objects.get(code="kraken").name == "kraken"
    assert stored_bars() == feather_bars(XRP_FEATHER)


@pytest.mark.django_db
def test_it_marks_a_bar_whose_period_has_not_ended_as_not_final(instrument, tmp_path, monkeypatch):
    # Given a clock 30 seconds into the last real candle's minute
    source = pd.read_feather(XRP_FEATHER)
    now = source["date"].iloc[-1].to_pydatetime() + pd.Timedelta(seconds=30)
    monkeypatch.setattr("django.utils.timezone.now", lambda: now)

    run = import_bars(XRP_FEATHER)

    assert run.error is None
    assert list(Bar.objects.filter(final=False).values_list("time", flat=True)) == [source["date"].iloc[-1]]


@pytest.mark.django_db
def test_it_shows_no_progress_bar_when_stderr_is_not_a_terminal(instrument):
    run = import_bars(XRP_FEATHER, no_progress=False)

    assert run.error is None
    assert run.stderr == ""


def test_it_rejects_an_unknown_timeframe():
    with pytest.raises(CommandError, match="invalid choice: '7m'"):
        call_command("import_bars", str(XRP_FEATHER), exchange="binance", symbol="XRP/ETH", timeframe="7m")

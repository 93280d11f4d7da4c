"""The pure file importers: reading every format into the same bars, and rejecting bad rows with
their position and reason. Real data throughout; defects are injected into copies. No database."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from market.importers import BarFileError, detect_format, read_bar_file, validate_bars

SAMPLE_DATA = Path(__file__).resolve().parents[2] / "sample_data"
FREQTRADE = SAMPLE_DATA / "freqtrade"
OHLCV = ["open", "high", "low", "close", "volume"]


def xrp_eth_1m() -> pd.DataFrame:
    """2,469 real Binance XRP/ETH 1m candles: date (UTC), open, high, low, close, volume."""
    return pd.read_feather(FREQTRADE / "XRP_ETH-1m.feather")


def as_csv(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


def read_and_validate(path: Path, timeframe: str = "1m", **kwargs):
    table = read_bar_file(path, **kwargs)
    return table, validate_bars(table, timeframe)


def bars_of(validation) -> pd.DataFrame:
    """The good bars as the source files hold them, for exact comparison."""
    good = validation.good.reset_index(drop=True)
    return good[["time", *OHLCV]].rename(columns={"time": "date"})


def same_bars(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(actual, expected.reset_index(drop=True), check_exact=True, check_dtype=False)


def reasons(validation) -> dict[int, str]:
    return {rejection.position: rejection.reason for rejection in validation.rejections}


# --- Each format reads to the same bars -----------------------------------------------------


def test_it_reads_the_real_freqtrade_json_exactly():
    # Given freqtrade's JSON of 13,681 real 1m candles
    path = FREQTRADE / "UNITTEST_BTC-1m.json"
    rows = json.loads(path.read_text())

    # When it is read and validated
    table, validation = read_and_validate(path)

    # Then every row is good, times are epoch milliseconds and values are exactly the file's
    assert table.time_format == "epoch milliseconds"
    assert table.position_name == "row index"
    assert validation.rejections == []
    expected = pd.DataFrame(rows, columns=["date", *OHLCV])
    expected["date"] = pd.to_datetime(expected["date"], unit="ms", utc=True)
    same_bars(bars_of(validation), expected)


def test_it_reads_gzipped_freqtrade_json(tmp_path):
    # Given the same JSON gzipped
    source = FREQTRADE / "UNITTEST_BTC-1m.json"
    path = tmp_path / "UNITTEST_BTC-1m.json.gz"
    path.write_bytes(gzip.compress(source.read_bytes()))

    # When both are read
    _, plain = read_and_validate(source)
    _, zipped = read_and_validate(path)

    # Then they give the same bars
    same_bars(bars_of(zipped), bars_of(plain))


@pytest.mark.parametrize(("name", "timeframe"), [("XRP_ETH-1m.feather", "1m"), ("ADA_BTC-5m.feather", "5m")])
def test_it_reads_real_feather_files_exactly(name, timeframe):
    expected = pd.read_feather(FREQTRADE / name)

    table, validation = read_and_validate(FREQTRADE / name, timeframe)

    assert table.time_format == "datetimes"
    assert validation.rejections == []
    same_bars(bars_of(validation), expected)


def test_it_reads_parquet_with_the_time_as_index_or_column(tmp_path):
    # Given real candles saved as Parquet twice: time as a column, and time as the index
    expected = xrp_eth_1m()
    expected.to_parquet(tmp_path / "column.parquet")
    expected.set_index("date").to_parquet(tmp_path / "index.parquet")

    for name in ("column.parquet", "index.parquet"):
        # When each is read
        _, validation = read_and_validate(tmp_path / name)

        # Then both give the source candles exactly
        assert validation.rejections == []
        same_bars(bars_of(validation), expected)


def test_it_takes_naive_datetimes_as_utc(tmp_path):
    expected = xrp_eth_1m()
    expected.assign(date=expected["date"].dt.tz_localize(None)).to_parquet(tmp_path / "naive.parquet")

    table, validation = read_and_validate(tmp_path / "naive.parquet")

    assert table.time_format == "datetimes without a time zone (taken as UTC)"
    same_bars(bars_of(validation), expected)


def test_it_matches_csv_columns_by_name_whatever_their_order():
    # Given jesse's real SOL/USDT candles, whose columns are timestamp, open, CLOSE, HIGH, LOW, volume
    path = SAMPLE_DATA / "jesse" / "test_candles_sol.csv"
    expected = pd.read_csv(path)

    # When the file is read
    table, validation = read_and_validate(path)

    # Then each value lands in the column its header names, exactly
    assert table.time_format == "epoch milliseconds"
    assert validation.rejections == []
    good = validation.good.reset_index(drop=True)
    for name in OHLCV:
        assert good[name].tolist() == expected[name].tolist()
    assert good["time"].tolist() == pd.to_datetime(expected["timestamp"], unit="ms", utc=True).tolist()


@pytest.mark.parametrize(
    ("header", "write_time", "time_format"),
    [
        ("date", lambda t: t.dt.strftime("%Y-%m-%dT%H:%M:%SZ"), "ISO-8601 text"),
        ("Time", lambda t: t.dt.strftime("%Y-%m-%d %H:%M:%S"), "ISO-8601 text"),
        ("DATETIME", lambda t: t.dt.tz_convert("Asia/Tokyo").map(lambda x: x.isoformat()), "ISO-8601 text"),
        ("timestamp", lambda t: t.astype("int64") // 10**6, "epoch seconds"),
        ("open_time", lambda t: t.astype("int64") // 10**3, "epoch milliseconds"),
        ("Timestamp", lambda t: t.astype("int64"), "epoch microseconds"),
        ("time", lambda t: t.astype("int64") * 1000, "epoch nanoseconds"),
    ],
)
def test_it_reads_csv_times_as_iso_8601_or_epoch_in_any_unit(tmp_path, header, write_time, time_format):
    # Given real candles written with one way of writing times, under one of the accepted headers
    expected = xrp_eth_1m()
    times = expected["date"].dt.as_unit("us")
    path = as_csv(expected.assign(date=write_time(times)).rename(columns={"date": header}), tmp_path / "bars.csv")

    # When the file is read
    table, validation = read_and_validate(path)

    # Then the times are recognised and the bars are exactly the source's
    assert table.time_format == time_format
    assert validation.rejections == []
    same_bars(bars_of(validation), expected)


def test_it_reads_optional_trades_and_vwap_columns(tmp_path):
    # Given 1m bars with trade counts and VWAP built from 12,477 real trades
    trades = pd.read_feather(FREQTRADE / "XRP_ETH-trades.feather")
    expected = minute_bars_with_trades_and_vwap(trades)
    path = as_csv(expected.rename(columns=str.upper), tmp_path / "bars.csv")

    # When the file is read
    _, validation = read_and_validate(path)

    # Then trades are whole numbers and vwap is exact
    good = validation.good.reset_index(drop=True)
    assert good["trades"].dtype == "Int64"
    assert good["trades"].sum() == 12_477
    assert good["trades"].tolist() == expected["trades"].tolist()
    assert good["vwap"].tolist() == expected["vwap"].tolist()


def minute_bars_with_trades_and_vwap(trades: pd.DataFrame) -> pd.DataFrame:
    minutes = trades.assign(
        time=pd.to_datetime(trades["timestamp"] // 60_000 * 60_000, unit="ms", utc=True),
        notional=trades["price"] * trades["amount"],
    ).groupby("time")
    bars = minutes.agg(
        open=("price", "first"),
        high=("price", "max"),
        low=("price", "min"),
        close=("price", "last"),
        volume=("amount", "sum"),
        trades=("price", "size"),
        notional=("notional", "sum"),
    )
    bars["vwap"] = bars.pop("notional") / bars["volume"]
    return bars.reset_index()


def test_it_numbers_csv_rows_by_line_with_the_header_as_line_1_and_blank_lines_counted(tmp_path):
    path = tmp_path / "bars.csv"
    path.write_text(
        "time,open,high,low,close,volume\n2019-10-11T00:00:00Z,1,1,1,1,1\n\n2019-10-11T00:01:00Z,1,1,2,1,1\n"
    )

    table, validation = read_and_validate(path)

    assert table.position_name == "line"
    assert list(table.frame.index) == [2, 4]
    assert [str(rejection) for rejection in validation.rejections] == [
        "line 4: high 1 is below low 2",
    ]


def test_it_lists_the_columns_it_ignores(tmp_path):
    path = as_csv(xrp_eth_1m().assign(quote_volume=1.0, ignore=0), tmp_path / "bars.csv")

    table, _ = read_and_validate(path)

    assert table.ignored_columns == ("quote_volume", "ignore")


# --- Bad rows -------------------------------------------------------------------------------


class CsvLines:
    """A CSV file as text lines, numbered as the importer numbers them: the header is line 1."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.lines = frame.to_csv(index=False).splitlines()
        self.header = self.lines[0].split(",")

    @property
    def last(self) -> int:
        return len(self.lines)

    def get(self, line: int, column: str) -> str:
        return self.lines[line - 1].split(",")[self.header.index(column)]

    def set(self, line: int, column: str, value: str) -> None:
        fields = self.lines[line - 1].split(",")
        fields[self.header.index(column)] = value
        self.lines[line - 1] = ",".join(fields)

    def write(self, path: Path) -> Path:
        path.write_text("\n".join(self.lines) + "\n")
        return path


def epoch_ms_csv() -> CsvLines:
    """Real XRP/ETH 1m candles with times as epoch milliseconds, under a `timestamp` header."""
    source = xrp_eth_1m()
    times = source["date"].dt.as_unit("ms").astype("int64")
    return CsvLines(source.assign(date=times).rename(columns={"date": "timestamp"}))


def iso_from_ms(text: str) -> str:
    return datetime.fromtimestamp(int(text) / 1000, UTC).isoformat()


def defective_copy(tmp_path: Path) -> tuple[Path, dict[int, str]]:
    """Real candles as CSV with nine rows spoiled in different ways; the expected reason by line."""
    csv = epoch_ms_csv()
    ranged = [line for line in range(2, csv.last + 1) if float(csv.get(line, "high")) > float(csv.get(line, "low"))]
    swapped, outside, zero, text, shifted = ranged[:5]
    negative, blank, duplicate = 32, 42, 53

    high, low = csv.get(swapped, "high"), csv.get(swapped, "low")
    csv.set(swapped, "high", low)
    csv.set(swapped, "low", high)
    doubled = repr(float(csv.get(outside, "high")) * 2)
    csv.set(outside, "close", doubled)
    csv.set(zero, "low", "0")
    csv.set(text, "open", "n.a.")
    late = str(int(csv.get(shifted, "timestamp")) + 30_000)
    csv.set(shifted, "timestamp", late)
    csv.set(negative, "volume", "-1")
    csv.set(blank, "close", "")
    repeated = csv.get(duplicate - 1, "timestamp")
    csv.set(duplicate, "timestamp", repeated)

    outside_range = f"[{float(csv.get(outside, 'low'))}, {float(csv.get(outside, 'high'))}]"
    expected = {
        swapped: f"high {float(low)} is below low {float(high)}",
        outside: f"close {doubled} is outside low-high {outside_range}",
        zero: "low 0 is not positive",
        text: "open 'n.a.' is not a number",
        shifted: f"time {iso_from_ms(late)} is not the start of a 1m bar (UTC)",
        negative: "volume -1 is negative",
        blank: "close is missing",
        duplicate - 1: f"time {iso_from_ms(repeated)} appears more than once (also at line {duplicate})",
        duplicate: f"time {iso_from_ms(repeated)} appears more than once (also at line {duplicate - 1})",
    }
    return csv.write(tmp_path / "defective.csv"), expected


def test_it_rejects_each_bad_row_with_its_line_and_reason_and_keeps_the_rest(tmp_path):
    # Given real candles with nine rows spoiled in different ways
    path, expected = defective_copy(tmp_path)

    # When the file is read and validated
    _, validation = read_and_validate(path)

    # Then exactly those rows are rejected, each with its CSV line number and reason
    assert reasons(validation) == expected
    assert all(str(rejection).startswith(f"line {rejection.position}: ") for rejection in validation.rejections)
    # And the good rows are the untouched source rows
    untouched = xrp_eth_1m().drop(index=[line - 2 for line in expected])
    same_bars(bars_of(validation), untouched)


def test_it_gives_every_reason_a_row_is_rejected(tmp_path):
    path = tmp_path / "bars.csv"
    path.write_text("time,open,high,low,close,volume\n2019-10-11T00:00:30Z,-1,1,2,3,-5\n")

    _, validation = read_and_validate(path)

    assert reasons(validation) == {
        2: "open -1 is not positive; high 1 is below low 2; volume -5 is negative; "
        "time 2019-10-11T00:00:30+00:00 is not the start of a 1m bar (UTC)"
    }


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("yesterday", "time 'yesterday' is not an ISO-8601 date and time"),
        ("2019-13-45T00:00:00Z", "time '2019-13-45T00:00:00Z' is not an ISO-8601 date and time"),
        ("", "time is missing"),
    ],
)
def test_it_rejects_unreadable_iso_times(tmp_path, value, reason):
    path = tmp_path / "bars.csv"
    path.write_text(f"time,open,high,low,close,volume\n2019-10-11T00:00:00Z,1,1,1,1,1\n{value},1,1,1,1,1\n")

    _, validation = read_and_validate(path)

    assert reasons(validation) == {3: reason}


def test_it_rejects_an_epoch_time_in_another_unit_than_the_rest_of_the_file(tmp_path):
    # Given epoch-millisecond times, one of them written in seconds
    csv = epoch_ms_csv()
    seconds = csv.get(4, "timestamp")[:-3]
    csv.set(4, "timestamp", seconds)

    _, validation = read_and_validate(csv.write(tmp_path / "bars.csv"))

    assert reasons(validation) == {
        4: f"time {seconds} looks like epoch seconds, but this file's times are epoch milliseconds"
    }


def test_it_rejects_bars_in_the_future_and_marks_the_current_one_not_final():
    # Given real 5m candles and a clock in the middle of one of them
    table = read_bar_file(FREQTRADE / "XRP_ETH-5m.feather")
    times: list[datetime] = [time.to_pydatetime() for time in table.frame["time"]]
    now = times[100] + timedelta(minutes=2)

    # When validated at that time
    validation = validate_bars(table, "5m", now=now)

    # Then later bars are rejected, the current one is not final and earlier ones are
    assert sorted(reasons(validation)) == list(range(101, len(times)))
    assert reasons(validation)[101] == f"time {times[101].isoformat()} is in the future (now is {now.isoformat()})"
    assert validation.good["final"].tolist() == [True] * 100 + [False]


def test_it_rejects_times_that_are_not_bar_starts_of_the_timeframe():
    # Given real 5m candles declared as 15m bars
    table = read_bar_file(FREQTRADE / "XRP_ETH-5m.feather")

    validation = validate_bars(table, "15m", now=datetime(2030, 1, 1, tzinfo=UTC))

    assert (validation.good["time"].dt.minute % 15 == 0).all()
    assert len(validation.good) + len(validation.rejections) == 706
    assert all("is not the start of a 15m bar" in rejection.reason for rejection in validation.rejections)


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ("trades,vwap\n2019-10-11T00:00:00Z,1,1,1,1,1,1.5,1", "trades 1.5 is not a count"),
        ("trades,vwap\n2019-10-11T00:00:00Z,1,1,1,1,1,-1,1", "trades -1 is not a count"),
        ("trades,vwap\n2019-10-11T00:00:00Z,1,1,1,1,1,3000000000,1", "trades 3000000000 is not a count"),
        ("trades,vwap\n2019-10-11T00:00:00Z,1,1,1,1,1,3,0", "vwap 0 is not positive"),
        ("trades,vwap\n2019-10-11T00:00:00Z,1,1,1,1,inf,3,1", "volume inf is not finite"),
    ],
)
def test_it_rejects_impossible_trade_counts_vwaps_and_infinities(tmp_path, extra, reason):
    path = tmp_path / "bars.csv"
    path.write_text("time,open,high,low,close,volume," + extra + "\n")

    _, validation = read_and_validate(path)

    assert reasons(validation)[2].startswith(reason)


# --- Files that cannot be read --------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "fmt", "message"),
    [
        ("missing.csv", None, "auto", "no such file"),
        ("bars.txt", "time,open\n", "auto", "cannot tell the format from the extension"),
        ("bars.parquet.gz", "x", "auto", "cannot tell the format from the extension"),
        ("empty.csv", "", "auto", "cannot read it as csv"),
        ("notes.csv", "hello,world\n1,2\n", "auto", "no time column"),
        ("short.csv", "date,open,high,low,close\n", "auto", "missing column(s) volume"),
        ("both.csv", "date,time,open,high,low,close,volume\n", "auto", "several time columns (time, date)"),
        ("bars.parquet", "time,open,high,low,close,volume\n", "auto", "cannot read it as parquet"),
        ("bars.feather", "not arrow", "auto", "cannot read it as feather"),
        ("bars.json", "[[1, 2", "auto", "cannot read it as json"),
        ("bars.json", '{"a": 1}', "auto", "expected a JSON array"),
        ("bars.json", "[[1509836520000, 1, 1, 1, 1]]", "auto", "row index 0 is [1509836520000, 1, 1, 1, 1]"),
        ("bars.json.gz", "[]", "auto", "cannot read it as json"),
        ("bars.csv", "time,open,high,low,close,volume\n", "parquet", "cannot read it as parquet"),
    ],
)
def test_it_refuses_a_file_it_cannot_read_naming_the_file(tmp_path, name, content, fmt, message):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)

    with pytest.raises(BarFileError) as raised:
        read_bar_file(path, fmt)

    assert str(raised.value).startswith(f"{path}: ")
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.csv", "csv"),
        ("a.CSV.gz", "csv"),
        ("a.parquet", "parquet"),
        ("a.pq", "parquet"),
        ("a.feather", "feather"),
        ("a.arrow", "feather"),
        ("BTC_USDT-1m.json", "json"),
        ("a.json.gz", "json"),
    ],
)
def test_it_tells_the_format_from_the_extension(name, fmt):
    assert detect_format(Path(name)) == fmt

"""OHLCV files (CSV, Parquet, Feather, freqtrade JSON) to checked bars. Pure: no Django, no clock.

Two steps, so that a caller can report every problem before it writes anything:

1. `read_bar_file` reads one file into a `BarTable`: a DataFrame with the canonical columns (`time`
   as a UTC datetime, `open high low close volume trades vwap` as float64, NaN where absent),
   indexed by each row's position in the file, plus the reasons why some values could not be read.
2. `validate_bars` applies the rules a stored bar must satisfy and splits the rows into the good
   ones and `Rejection`s, each naming the row's position and every reason it is refused.

Everything is vectorized over columns: a file can hold millions of rows, so Python only loops over
the rows being rejected (to build their messages) and never over the good ones.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from market.timeframes import parse_timeframe

PRICE_COLUMNS = ("open", "high", "low", "close")
OHLCV_COLUMNS = (*PRICE_COLUMNS, "volume")
OPTIONAL_COLUMNS = ("trades", "vwap")
VALUE_COLUMNS = (*OHLCV_COLUMNS, *OPTIONAL_COLUMNS)
# Accepted names for the bar's open time, matched case-insensitively after stripping spaces.
TIME_COLUMN_NAMES = ("time", "date", "timestamp", "datetime", "open_time")
FORMATS = ("csv", "parquet", "feather", "json", "jsonl")

_EXTENSION_FORMATS = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".feather": "feather",
    ".arrow": "feather",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
# Formats whose readers decompress a trailing `.gz` themselves (Parquet and Feather compress inside).
_GZIP_FORMATS = ("csv", "json", "jsonl")

# Epoch numbers are told apart by magnitude: below 1e11 they are seconds (1e11 s is the year 5138,
# while 1e11 ms is only March 1973), and each further factor of 1000 is the next finer unit.
_EPOCH_LIMITS = np.array([1e11, 1e14, 1e17])
_EPOCH_UNITS: tuple[tuple[Literal["s", "ms", "us", "ns"], str], ...] = (
    ("s", "seconds"),
    ("ms", "milliseconds"),
    ("us", "microseconds"),
    ("ns", "nanoseconds"),
)

_TIME_SAMPLE = 1000
_MAX_TRADES = 2**31 - 1
# What a reader may raise on a file that is corrupt or in another format; anything else is a bug.
_READ_ERRORS = (OSError, EOFError, UnicodeDecodeError, ValueError, pa.ArrowException, pd.errors.ParserError)


class BarFileError(Exception):
    """A file that cannot be read as bars at all. The message names the file."""


@dataclass(frozen=True)
class BarTable:
    """The rows of one file, normalized but not yet checked.

    `frame` has the columns `time` (datetime64, UTC; NaT where unreadable) and `VALUE_COLUMNS`
    (float64; NaN where missing or unreadable), and is indexed by position in the file: the line
    number for CSV (the header is line 1), the 0-based row index for the other formats.
    `read_problems` holds, per position, why values could not be read (one joined text per row).
    """

    frame: pd.DataFrame
    position_name: str
    time_format: str
    read_problems: pd.Series
    ignored_columns: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Rejection:
    position: int
    position_name: str
    reason: str

    def __str__(self) -> str:
        return f"{self.position_name} {self.position}: {self.reason}"


@dataclass(frozen=True)
class Validation:
    """`good`: the rows that may be stored, sorted by time, with `trades` as Int64 and a `final`
    column; `rejections`: every other row, in file order."""

    good: pd.DataFrame
    rejections: list[Rejection]


# --- Reading ---------------------------------------------------------------------------------


def detect_format(path: Path) -> str:
    """The format implied by the file's extension; `.gz` is allowed for CSV and JSON."""
    suffixes = [suffix.lower() for suffix in path.suffixes]
    compressed = bool(suffixes) and suffixes[-1] == ".gz"
    extension = suffixes[-2] if compressed and len(suffixes) > 1 else (suffixes[-1] if suffixes else "")
    fmt = _EXTENSION_FORMATS.get(extension)
    if fmt is None or (compressed and fmt not in _GZIP_FORMATS):
        known = ", ".join(sorted(_EXTENSION_FORMATS)) + " (and .csv.gz, .json.gz, .jsonl.gz)"
        raise BarFileError(f"{path}: cannot tell the format from the extension; expected {known}, or pass a format")
    return fmt


def read_bar_file(path: Path, fmt: str = "auto") -> BarTable:
    """Read one OHLCV file; raises `BarFileError` (naming the file) if it cannot be read at all."""
    if not path.is_file():
        raise BarFileError(f"{path}: {'not a file' if path.exists() else 'no such file'}")
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt not in _READERS:
        raise BarFileError(f"{path}: unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    try:
        raw, position_name = _READERS[fmt](path)
    except _READ_ERRORS as exc:
        raise BarFileError(f"{path}: cannot read it as {fmt}: {str(exc).strip()}") from exc
    try:
        return normalize_bars(raw, position_name)
    except ValueError as exc:
        raise BarFileError(f"{path}: {exc}") from exc


def _read_csv(path: Path) -> tuple[pd.DataFrame, str]:
    # pandas infers each column's type: a clean column arrives as numbers (the fast path; the
    # round-trip tests check that it reads every float back exactly), a column with a bad value
    # arrives as text, so that the bad value can be quoted as written. Blank lines are kept while numbering, so that
    # positions stay true line numbers, then dropped. Line numbers assume one record per line, as
    # in every OHLCV export (no quoted line breaks).
    frame = pd.read_csv(path, skip_blank_lines=False)
    frame.index = frame.index + 2
    return frame[frame.notna().any(axis=1)], "line"


def _read_parquet(path: Path) -> tuple[pd.DataFrame, str]:
    return _with_time_index_as_column(pd.read_parquet(path)), "row index"


def _read_feather(path: Path) -> tuple[pd.DataFrame, str]:
    return _with_time_index_as_column(pd.read_feather(path)), "row index"


def _with_time_index_as_column(frame: pd.DataFrame) -> pd.DataFrame:
    """pandas may store the time as the index (e.g. `df.set_index("date").to_parquet()`)."""
    if frame.index.name is not None and str(frame.index.name).strip().lower() in TIME_COLUMN_NAMES:
        frame = frame.reset_index()
    return frame.reset_index(drop=True)


def _read_freqtrade_json(path: Path) -> tuple[pd.DataFrame, str]:
    """freqtrade's `[[time_ms, open, high, low, close, volume], ...]`, plain or gzipped."""
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as file:
        rows = json.load(file)
    if not isinstance(rows, list):
        raise ValueError("expected a JSON array of [time, open, high, low, close, volume] arrays")
    # One cheap pass over the rows: pandas would otherwise pad short rows or split dicts into keys.
    wrong_shape = [index for index, row in enumerate(rows) if not (isinstance(row, list) and len(row) == 6)]
    if wrong_shape:
        first = wrong_shape[0]
        raise ValueError(
            f"row index {first} is {json.dumps(rows[first])[:80]}, not [time, open, high, low, close, volume] "
            f"({len(wrong_shape):,} such rows)"
        )
    return pd.DataFrame(rows, columns=["time", *OHLCV_COLUMNS], dtype=object), "row index"


def _read_json_lines(path: Path) -> tuple[pd.DataFrame, str]:
    """JSON Lines: one object per line, keyed by column name (what `manage.py export_bars` writes).
    `precise_float`: pandas' default JSON float parser may miss the last digit. `dtype=False`: values
    are left as read (no type or date guessing) for `normalize_bars` to parse like any other file's."""
    frame = pd.read_json(path, lines=True, dtype=False, precise_float=True)
    return frame, "row index"


_READERS: dict[str, Callable[[Path], tuple[pd.DataFrame, str]]] = {
    "csv": _read_csv,
    "parquet": _read_parquet,
    "feather": _read_feather,
    "json": _read_freqtrade_json,
    "jsonl": _read_json_lines,
}


# --- Normalizing -----------------------------------------------------------------------------


def normalize_bars(raw: pd.DataFrame, position_name: str) -> BarTable:
    """Rename the columns to the canonical names and parse times and numbers.

    Raises ValueError when the OHLCV columns cannot be found. Values that cannot be parsed become
    NaT/NaN and are explained in `read_problems`.
    """
    columns, ignored = _match_columns(raw)
    times, time_format, problems = parse_times(raw[columns["time"]])
    frame = pd.DataFrame({"time": times}, index=raw.index)
    for name in VALUE_COLUMNS:
        if name in columns:
            frame[name], found = _parse_numbers(raw[columns[name]], name, required=name in OHLCV_COLUMNS)
            problems.extend(found)
        else:
            frame[name] = np.nan
    return BarTable(frame, position_name, time_format, _join_reasons(problems, raw.index), ignored)


def _match_columns(raw: pd.DataFrame) -> tuple[dict[str, object], tuple[str, ...]]:
    """Canonical name -> the file's own column label; and the labels that will be ignored."""
    by_name: dict[str, object] = {}
    for label in raw.columns:
        name = str(label).strip().lower()
        if name in by_name:
            raise ValueError(f"two columns are both called {name!r} (names are matched ignoring case)")
        by_name[name] = label
    found = ", ".join(str(label) for label in raw.columns) or "none"
    time_names = [name for name in TIME_COLUMN_NAMES if name in by_name]
    if not time_names:
        raise ValueError(f"no time column (one of {', '.join(TIME_COLUMN_NAMES)}); the columns are: {found}")
    if len(time_names) > 1:
        raise ValueError(f"several time columns ({', '.join(time_names)}); keep only one")
    missing = [name for name in OHLCV_COLUMNS if name not in by_name]
    if missing:
        raise ValueError(f"missing column(s) {', '.join(missing)}; the columns are: {found}")
    wanted = {"time": by_name[time_names[0]]} | {name: by_name[name] for name in VALUE_COLUMNS if name in by_name}
    ignored = tuple(str(label) for label in raw.columns if label not in wanted.values())
    return wanted, ignored


def parse_times(raw: pd.Series) -> tuple[pd.Series, str, list[pd.Series]]:
    """Times as UTC datetimes, how they were written, and reasons for those that could not be read.

    Datetime columns are converted to UTC (naive ones are taken to be UTC already). A column whose
    first values are mostly numbers is epoch time, in one unit for the whole file (see
    `_EPOCH_LIMITS`); anything else is ISO-8601 text, naive text again taken as UTC. (Only a sample
    decides: parsing a million dates as numbers first would take seconds.)
    """
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        return raw.dt.tz_convert("UTC"), "datetimes", _missing(raw, "time")
    if pd.api.types.is_datetime64_dtype(raw.dtype):
        return raw.dt.tz_localize("UTC"), "datetimes without a time zone (taken as UTC)", _missing(raw, "time")
    if _is_numeric(raw):
        return _epoch_times(raw, raw.astype("float64"))
    if _mostly_numbers(raw.dropna().head(_TIME_SAMPLE)):
        return _epoch_times(raw, pd.to_numeric(raw, errors="coerce").astype("float64"))
    times = pd.to_datetime(raw, format="ISO8601", utc=True, errors="coerce")
    unreadable = raw.notna() & times.isna()
    reasons = "time " + _quoted(raw[unreadable]) + " is not an ISO-8601 date and time"
    return times, "ISO-8601 text", [*_missing(raw, "time"), reasons]


def _epoch_times(raw: pd.Series, numbers: pd.Series) -> tuple[pd.Series, str, list[pd.Series]]:
    magnitude = numbers.abs()
    units = pd.Series(np.searchsorted(_EPOCH_LIMITS, magnitude.to_numpy(), side="right"), index=raw.index)
    # The file's unit is that of its typical (median) value, so one corrupt row cannot change it.
    median = magnitude.median()
    file_unit = int(np.searchsorted(_EPOCH_LIMITS, median, side="right")) if pd.notna(median) else 1
    unit, unit_name = _EPOCH_UNITS[file_unit]
    other_unit = numbers.notna() & (units != file_unit)
    times = pd.to_datetime(numbers.where(~other_unit), unit=unit, utc=True, errors="coerce")
    out_of_range = numbers.notna() & ~other_unit & times.isna()
    not_numbers = raw.notna() & numbers.isna()
    unit_names = units[other_unit].map(lambda index: _EPOCH_UNITS[index][1])
    return (
        times,
        f"epoch {unit_name}",
        [
            *_missing(raw, "time"),
            "time " + _quoted(raw[not_numbers]) + f" is not a number (this file's times are epoch {unit_name})",
            "time "
            + _shown(raw[other_unit])
            + " looks like epoch "
            + unit_names
            + f", but this file's times are epoch {unit_name}",
            "time " + _shown(raw[out_of_range]) + " is out of the range of dates",
        ],
    )


def _is_numeric(raw: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype)


def _mostly_numbers(sample: pd.Series) -> bool:
    return bool(pd.to_numeric(sample, errors="coerce").notna().mean() > 0.5) if len(sample) else False


def _parse_numbers(raw: pd.Series, name: str, *, required: bool) -> tuple[pd.Series, list[pd.Series]]:
    numbers = raw if _is_numeric(raw) else pd.to_numeric(raw, errors="coerce")
    numbers = numbers.astype("float64")
    unreadable = raw.notna() & numbers.isna()
    reasons = [f"{name} " + _quoted(raw[unreadable]) + " is not a number"]
    return numbers, ([*_missing(raw, name), *reasons] if required else reasons)


def _missing(raw: pd.Series, name: str) -> list[pd.Series]:
    missing = raw.isna()
    return [pd.Series(f"{name} is missing", index=raw.index[missing], dtype=object)]


# --- Validating ------------------------------------------------------------------------------


def validate_bars(table: BarTable, timeframe: str, now: datetime | None = None) -> Validation:
    """Split the rows into storable bars and rejections, with every reason for each rejection.

    `now` (aware) rejects bars that open in the future and marks those whose period has not ended
    as not final; without it every bar is final.
    """
    bar_length = parse_timeframe(timeframe)
    frame = table.frame
    findings = [table.read_problems, _unexplained_gaps(frame, table.read_problems)]
    findings += [check(frame) for check in _VALUE_CHECKS]
    findings += _time_findings(frame, timeframe, pd.Timedelta(bar_length), now, table.position_name)
    reasons = _join_reasons(findings, frame.index)
    rejections = [
        Rejection(position, table.position_name, reason)
        for position, reason in zip(reasons.index.tolist(), reasons.tolist(), strict=True)
    ]
    good = frame[~frame.index.isin(reasons.index)].sort_values("time", kind="stable")
    good = good.assign(trades=good["trades"].astype("Int64"))
    good["final"] = True if now is None else (good["time"] + bar_length <= now)
    return Validation(good, rejections)


def _unexplained_gaps(frame: pd.DataFrame, read_problems: pd.Series) -> pd.Series:
    """Missing values the reader did not already explain (for frames built without a reader)."""
    gaps = frame[["time", *OHLCV_COLUMNS]].isna().any(axis=1) & ~frame.index.isin(read_problems.index)
    return pd.Series("missing time or OHLCV value", index=frame.index[gaps], dtype=object)


def _not_finite(frame: pd.DataFrame) -> pd.Series:
    return _per_column(frame, VALUE_COLUMNS, np.isinf, "is not finite")


def _not_positive(frame: pd.DataFrame) -> pd.Series:
    return _per_column(frame, (*PRICE_COLUMNS, "vwap"), lambda values: values <= 0, "is not positive")


def _high_below_low(frame: pd.DataFrame) -> pd.Series:
    bad = frame[frame["high"] < frame["low"]]
    return "high " + _shown(bad["high"]) + " is below low " + _shown(bad["low"])


def _open_outside_range(frame: pd.DataFrame) -> pd.Series:
    return _outside_range(frame, "open")


def _close_outside_range(frame: pd.DataFrame) -> pd.Series:
    return _outside_range(frame, "close")


def _outside_range(frame: pd.DataFrame, name: str) -> pd.Series:
    # Only meaningful when the range itself is sound; a high below low is reported on its own.
    sound = frame["low"] <= frame["high"]
    bad = frame[sound & ((frame[name] < frame["low"]) | (frame[name] > frame["high"]))]
    return (
        f"{name} "
        + _shown(bad[name])
        + " is outside low-high ["
        + _shown(bad["low"])
        + ", "
        + _shown(bad["high"])
        + "]"
    )


def _negative_volume(frame: pd.DataFrame) -> pd.Series:
    return _per_column(frame, ("volume",), lambda values: values < 0, "is negative")


def _bad_trade_count(frame: pd.DataFrame) -> pd.Series:
    trades = frame["trades"]
    # The column is a 32-bit integer in the database.
    bad = trades[(trades < 0) | (trades > _MAX_TRADES) | (np.isfinite(trades) & (trades != np.floor(trades)))]
    return "trades " + _shown(bad) + f" is not a count (a whole number from 0 to {_MAX_TRADES:,})"


_VALUE_CHECKS: tuple[Callable[[pd.DataFrame], pd.Series], ...] = (
    _not_finite,
    _not_positive,
    _high_below_low,
    _open_outside_range,
    _close_outside_range,
    _negative_volume,
    _bad_trade_count,
)


def _time_findings(
    frame: pd.DataFrame, timeframe: str, bar_length: pd.Timedelta, now: datetime | None, position_name: str
) -> list[pd.Series]:
    times = frame["time"]
    known = times.notna()
    # Bars open at whole multiples of their length since the Unix epoch (1d bars at 00:00 UTC).
    unaligned = known & (times.dt.floor(bar_length) != times)
    findings = ["time " + _iso(times[unaligned]) + f" is not the start of a {timeframe} bar (UTC)"]
    if now is not None:
        future = known & (times > now)
        findings.append("time " + _iso(times[future]) + f" is in the future (now is {now.isoformat()})")
    findings.append(_duplicate_times(times[known], position_name))
    return findings


def _duplicate_times(times: pd.Series, position_name: str) -> pd.Series:
    """Every row whose time occurs more than once: the file cannot say which of them is right."""
    repeated = times[times.duplicated(keep=False)]
    if repeated.empty:
        return pd.Series(dtype=object)
    ordered = pd.DataFrame({"time": repeated, "position": repeated.index}).sort_values(["time", "position"])
    groups = ordered.groupby("time", sort=False)["position"]
    first = groups.transform("min")
    second = ordered["position"].where(groups.cumcount() == 1).groupby(ordered["time"], sort=False).transform("max")
    other = first.where(ordered["position"] != first, second).astype("int64").astype(str)
    reasons = "time " + _iso(ordered["time"]) + f" appears more than once (also at {position_name} " + other + ")"
    return reasons.set_axis(ordered["position"].to_numpy())


# --- Messages --------------------------------------------------------------------------------


def _per_column(
    frame: pd.DataFrame, names: tuple[str, ...], test: Callable[[pd.Series], pd.Series], text: str
) -> pd.Series:
    """One reason per row, listing each named column whose value fails `test`."""
    found = []
    for name in names:
        bad = frame[name][test(frame[name])]
        found.append(f"{name} " + _shown(bad) + f" {text}")
    return _join_reasons(found, frame.index)


def _join_reasons(findings: list[pd.Series], index: pd.Index) -> pd.Series:
    """Merge reason Series (position -> text, at most one per position each) into one text per
    position, in the order of `findings` then of `index`; positions without reasons are left out."""
    findings = [found for found in findings if not found.empty]
    if not findings:
        return pd.Series(dtype=object)
    # Work on the flagged positions only: usually none or few of a large file's rows.
    flagged = index[index.isin(np.concatenate([found.index.to_numpy() for found in findings]))]
    joined: pd.Series = pd.Series(None, index=flagged, dtype=object)
    for found in findings:
        found = found.reindex(flagged)
        separator = joined.where(joined.isna(), joined + "; ").fillna("")
        joined = joined.where(found.isna(), separator + found)
    return joined.dropna()


def _shown(values: pd.Series) -> pd.Series:
    """Numbers as Python prints them (the shortest text that reads back as the same value), whole
    ones without a decimal point: CSV columns with a blank cell are read as floats, and an epoch
    time 1672531200 is clearer than 1672531200.0."""
    return values.astype(object).map(_number_text)


def _number_text(value: object) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e18:
        return str(int(value))
    return str(value)


def _quoted(values: pd.Series) -> pd.Series:
    return values.astype(object).map(repr)


def _iso(times: pd.Series) -> pd.Series:
    return times.astype(object).map(lambda moment: moment.isoformat())

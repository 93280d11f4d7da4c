"""Data-quality checks of one series over one day, scored 0..100. Pure: no Django, no clock.

`check_day` takes the day's bars as a DataFrame (columns time, open, high, low, close, volume; in
any order, duplicates allowed: they are one of the things it looks for), the spans when the market
was open, `now`, optionally the bars before the day (the baseline of the outlier statistics) and
another source's bars of the same instrument. It returns the score and the findings:

- gap: bars missing while the market was open (one finding per run of missing bars);
- duplicate: several bars with one open time;
- ohlc: high below open/close/low, or low above open/close/high;
- non_positive_price, negative_volume;
- return_outlier: a bad tick. A close whose log return has a robust z-score (median and MAD of the
  baseline's returns) of at least `return_z`, immediately reversed by a return of the opposite
  sign and the same size. Real moves persist; bad prints come back. Without the reversal the
  move is the market's, not a defect, and is not flagged;
- volume_outlier: log volume with a robust z-score of at least `volume_z` (volume spikes of
  10,000x are unit bugs, not trading);
- stale: the feed stopped (no bar for `stale_after` periods up to `now` while the market is open)
  or froze (the same bar, volume included, `stale_repeats` times in a row);
- source_disagreement: closes that differ from the other source's by more than `disagreement`.

Thresholds are set so that real exchange data without defects scores 100 (see the tests, on
freqtrade's real Binance candles) while injected defects are all found. Penalties add up; the score
is 100 only without a single finding, and never below 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from market.timeframes import parse_timeframe

PRICE_COLUMNS = ["open", "high", "low", "close"]
# At most this many findings of one kind are listed; the rest are summed up in one more.
MAX_FINDINGS_PER_KIND = 50


@dataclass(frozen=True)
class Thresholds:
    return_z: float = 30.0
    volume_z: float = 8.0
    stale_after: int = 5
    stale_repeats: int = 5
    disagreement: float = 0.01
    # Fewer returns than this in the baseline and day: too little to tell an outlier.
    min_returns: int = 30


@dataclass(frozen=True)
class Penalties:
    """Points off per finding. Gaps and disagreement are proportional (to the share of bars)."""

    gap_share: float = 100.0
    duplicate: float = 2.0
    ohlc: float = 5.0
    non_positive_price: float = 10.0
    negative_volume: float = 5.0
    return_outlier: float = 3.0
    volume_outlier: float = 1.0
    stale: float = 10.0
    disagreement_share: float = 50.0


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str
    time: datetime | None
    count: int
    penalty: float
    detail: str


@dataclass(frozen=True)
class DayQuality:
    score: int
    bars: int
    expected: int
    findings: tuple[Finding, ...] = field(default=())


def check_day(
    bars: pd.DataFrame,
    *,
    timeframe: str,
    open_spans: Sequence[tuple[datetime, datetime]],
    now: datetime,
    history: pd.DataFrame | None = None,
    reference: pd.DataFrame | None = None,
    thresholds: Thresholds | None = None,
    penalties: Penalties | None = None,
) -> DayQuality:
    """Score the bars of one day; `open_spans` are [start, end) spans of that day (UTC, aware)."""
    limits = thresholds or Thresholds()
    points = penalties or Penalties()
    step = parse_timeframe(timeframe)
    frame = _normalized(bars)
    expected = _expected_times(open_spans, step, now)
    findings: list[Finding] = []
    findings += _duplicates(frame, points)
    unique = frame.drop_duplicates("time", keep="last")
    findings += _invalid_bars(unique, points)
    stale, missing = _stale_tail(unique, expected, open_spans, step, now, limits, points)
    findings += stale
    findings += _gaps(missing, len(expected), step, points)
    findings += _frozen(unique, limits, points)
    valid = unique[_valid_mask(unique)]
    baseline = _normalized(history) if history is not None else valid.iloc[:0]
    findings += _return_outliers(valid, baseline[_valid_mask(baseline)], limits, points)
    findings += _volume_outliers(valid, baseline[_valid_mask(baseline)], limits, points)
    if reference is not None:
        findings += _disagreements(valid, _normalized(reference), limits, points)
    total = sum(finding.penalty for finding in findings)
    score = 100 if not findings else max(0, min(99, math.floor(100 - total)))
    return DayQuality(score, len(frame), len(expected), tuple(findings))


def day_spans(day_start: datetime) -> list[tuple[datetime, datetime]]:
    """The open spans of a 24/7 market's day: the whole UTC day."""
    return [(day_start, day_start + timedelta(days=1))]


# --- helpers -------------------------------------------------------------------------------------


def _normalized(bars: pd.DataFrame) -> pd.DataFrame:
    frame = bars.loc[:, ["time", *PRICE_COLUMNS, "volume"]].copy()
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    frame[[*PRICE_COLUMNS, "volume"]] = frame[[*PRICE_COLUMNS, "volume"]].astype("float64")
    return frame.sort_values("time", kind="stable").reset_index(drop=True)


def _valid_mask(frame: pd.DataFrame) -> pd.Series:
    prices = frame[PRICE_COLUMNS]
    return (prices > 0).all(axis=1) & (frame["volume"] >= 0) & ~_ohlc_broken(frame)


def _ohlc_broken(frame: pd.DataFrame) -> pd.Series:
    top = frame[["open", "close", "low"]].max(axis=1)
    bottom = frame[["open", "close", "high"]].min(axis=1)
    return (frame["high"] < top) | (frame["low"] > bottom)


def _expected_times(spans: Sequence[tuple[datetime, datetime]], step: timedelta, now: datetime) -> pd.DatetimeIndex:
    """Open times of every bar whose whole period lies in an open span and has ended by `now`."""
    expected = pd.DatetimeIndex([], tz="UTC")
    for start, end in spans:
        last = min(end, now) - step
        if last >= start:
            expected = expected.union(pd.date_range(start, last, freq=step))
    return expected


def _runs(times: pd.DatetimeIndex, step: timedelta) -> list[tuple[pd.Timestamp, int]]:
    """Consecutive times (one `step` apart) as (first, count) runs."""
    runs: list[tuple[pd.Timestamp, int]] = []
    for time in times.sort_values():
        if runs and time - (runs[-1][0] + (runs[-1][1] - 1) * step) == step:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((time, 1))
    return runs


def _capped(findings: list[Finding], kind: str, label: str) -> list[Finding]:
    if len(findings) <= MAX_FINDINGS_PER_KIND:
        return findings
    kept, rest = findings[:MAX_FINDINGS_PER_KIND], findings[MAX_FINDINGS_PER_KIND:]
    count = sum(finding.count for finding in rest)
    penalty = sum(finding.penalty for finding in rest)
    return [*kept, Finding(kind, None, count, penalty, f"and {len(rest)} more {label}")]


def _at(time: Any) -> datetime:
    """A pandas time (from a row, an index or a Series) as an aware datetime."""
    return pd.Timestamp(time).to_pydatetime()


def _gaps(missing: pd.DatetimeIndex, expected: int, step: timedelta, points: Penalties) -> list[Finding]:
    findings = []
    for first, count in _runs(missing, step):
        last = first + (count - 1) * step
        detail = (
            f"{count} bar(s) missing, {first:%H:%M} to {last:%H:%M}" if count > 1 else f"bar missing at {first:%H:%M}"
        )
        findings.append(Finding("gap", _at(first), count, points.gap_share * count / expected, detail))
    return _capped(findings, "gap", "gaps")


def _duplicates(frame: pd.DataFrame, points: Penalties) -> list[Finding]:
    counts = frame["time"].value_counts()
    repeated = counts[counts > 1].sort_index()
    findings = [
        Finding("duplicate", _at(time), int(count), points.duplicate * (count - 1), f"{count} bars at {time:%H:%M}")
        for time, count in repeated.items()
    ]
    return _capped(findings, "duplicate", "duplicated times")


def _invalid_bars(frame: pd.DataFrame, points: Penalties) -> list[Finding]:
    findings: list[Finding] = []
    broken = frame[_ohlc_broken(frame)]
    findings += _capped(
        [Finding("ohlc", _at(row.time), 1, points.ohlc, _ohlc_detail(row)) for row in broken.itertuples(index=False)],
        "ohlc",
        "OHLC violations",
    )
    non_positive = frame[(frame[PRICE_COLUMNS] <= 0).any(axis=1)]
    findings += _capped(
        [
            Finding(
                "non_positive_price", _at(row.time), 1, points.non_positive_price, f"price <= 0 at {row.time:%H:%M}"
            )
            for row in non_positive.itertuples(index=False)
        ],
        "non_positive_price",
        "bars with prices <= 0",
    )
    negative = frame[frame["volume"] < 0]
    findings += _capped(
        [
            Finding(
                "negative_volume",
                _at(row.time),
                1,
                points.negative_volume,
                f"volume {row.volume:g} at {row.time:%H:%M}",
            )
            for row in negative.itertuples(index=False)
        ],
        "negative_volume",
        "bars with negative volume",
    )
    return findings


def _ohlc_detail(row: object) -> str:
    time, o, h, low, c = (getattr(row, name) for name in ("time", "open", "high", "low", "close"))
    return f"o={o:g} h={h:g} l={low:g} c={c:g} at {time:%H:%M}"


def _stale_tail(
    frame: pd.DataFrame,
    expected: pd.DatetimeIndex,
    spans: Sequence[tuple[datetime, datetime]],
    step: timedelta,
    now: datetime,
    limits: Thresholds,
    points: Penalties,
) -> tuple[list[Finding], pd.DatetimeIndex]:
    """A feed that stopped: the missing bars up to `now` while open. Returns (finding, other missing)."""
    missing = expected.difference(pd.DatetimeIndex(frame["time"]))
    open_now = any(start <= now < end for start, end in spans)
    if not open_now or missing.empty:
        return [], missing
    last_bar = frame["time"].max() if len(frame) else None
    tail = missing[missing > last_bar] if last_bar is not None else missing
    if len(tail) < limits.stale_after:
        return [], missing
    since = "the day began" if last_bar is None else f"{last_bar:%H:%M}"
    finding = Finding("stale", _at(tail[0]), len(tail), points.stale, f"no bar for {len(tail)} period(s) since {since}")
    return [finding], missing.difference(tail)


def _frozen(frame: pd.DataFrame, limits: Thresholds, points: Penalties) -> list[Finding]:
    """Runs of identical bars (volume included, volume > 0): a feed repeating its last message."""
    values = frame[[*PRICE_COLUMNS, "volume"]]
    same = (values == values.shift()).all(axis=1) & (frame["volume"] > 0)
    run_id = (~same).cumsum()
    findings = []
    for _, run in frame.groupby(run_id):
        if len(run) >= limits.stale_repeats:
            first = run["time"].iloc[0]
            detail = f"the same bar {len(run)} times from {first:%H:%M}"
            findings.append(Finding("stale", _at(first), len(run), points.stale, detail))
    return _capped(findings, "stale", "frozen runs")


def _robust_z(values: pd.Series, baseline: pd.Series) -> pd.Series:
    """(x - median) / (1.4826 MAD) over `baseline`; the mean absolute deviation when MAD is 0."""
    median = baseline.median()
    spread = 1.4826 * (baseline - median).abs().median()
    if not spread > 0:
        spread = 1.2533 * (baseline - median).abs().mean()
    if not spread > 0:
        return pd.Series(0.0, index=values.index)
    return (values - median) / spread


def _return_outliers(
    frame: pd.DataFrame, baseline: pd.DataFrame, limits: Thresholds, points: Penalties
) -> list[Finding]:
    both = pd.concat([baseline, frame]).drop_duplicates("time", keep="last").sort_values("time")
    returns = np.log(both["close"]).diff()
    if returns.count() < limits.min_returns:
        return []
    z = _robust_z(returns, returns.dropna())
    following = z.shift(-1)
    reversed_spike = (
        (z.abs() >= limits.return_z) & (following.abs() >= limits.return_z) & (np.sign(z) == -np.sign(following))
    )
    day_times = set(frame["time"])
    findings = [
        Finding(
            "return_outlier",
            _at(time),
            1,
            points.return_outlier,
            f"close {close:g} at {time:%H:%M} (z {zscore:+.0f}, reversed)",
        )
        for time, close, zscore, flagged in zip(both["time"], both["close"], z, reversed_spike, strict=True)
        if flagged and time in day_times
    ]
    return _capped(findings, "return_outlier", "return outliers")


def _volume_outliers(
    frame: pd.DataFrame, baseline: pd.DataFrame, limits: Thresholds, points: Penalties
) -> list[Finding]:
    both = pd.concat([baseline, frame]).drop_duplicates("time", keep="last")
    traded = both[both["volume"] > 0]
    if len(traded) < limits.min_returns:
        return []
    log_volume = np.log(traded["volume"])
    day = frame[frame["volume"] > 0]
    z = _robust_z(np.log(day["volume"]), log_volume)
    findings = [
        Finding(
            "volume_outlier",
            _at(time),
            1,
            points.volume_outlier,
            f"volume {volume:g} at {time:%H:%M} (z {zscore:+.0f})",
        )
        for time, volume, zscore in zip(day["time"], day["volume"], z, strict=True)
        if zscore >= limits.volume_z
    ]
    return _capped(findings, "volume_outlier", "volume outliers")


def _disagreements(
    frame: pd.DataFrame, reference: pd.DataFrame, limits: Thresholds, points: Penalties
) -> list[Finding]:
    joined = frame[["time", "close"]].merge(reference[["time", "close"]], on="time", suffixes=("", "_other"))
    joined = joined[joined["close_other"] > 0]
    if joined.empty:
        return []
    joined = joined.assign(difference=(joined["close"] - joined["close_other"]).abs() / joined["close_other"])
    apart = joined[joined["difference"] > limits.disagreement]
    if apart.empty:
        return []
    step = joined["time"].diff().min() if len(joined) > 1 else pd.Timedelta(minutes=1)
    findings = []
    for first, count in _runs(pd.DatetimeIndex(apart["time"]), step):
        worst = apart[(apart["time"] >= first) & (apart["time"] <= first + (count - 1) * step)]["difference"].max()
        penalty = points.disagreement_share * count / len(joined)
        detail = f"{count} close(s) from {first:%H:%M} differ from the other source by up to {worst:.1%}"
        findings.append(Finding("source_disagreement", _at(first), count, penalty, detail))
    return _capped(findings, "source_disagreement", "disagreeing runs")

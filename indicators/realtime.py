"""Latest indicator values published with each final bar (the hook `market.services.publish_bars` calls).

Each process keeps one `LiveIndicators` per series it has published, opened on a window of the
series' recent stored bars the first time and then advanced by one O(1) update per closed bar
(~20-40 microseconds for the 13 indicators). It is reopened from the database when the bar does not
follow the last one it saw: a correction of an older bar, or bars stored without being published.
Many bars of a series published at once (a collector catching up) get their values from one
vectorized pass of the batch indicators over the stored bars instead, and the series is reopened
after the last of them.

Publishing must never fail because of indicators: an error is logged and the bar goes out with
`"indicators": null`.
"""

from __future__ import annotations

import logging
import threading
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise

import numpy as np

from indicators import queries
from indicators.catalogue import IndicatorSpec, default_specs
from indicators.compute import compute_many
from indicators.live import LiveBar, LiveIndicators, Values
from indicators.series import COLUMNS, Bars, FloatArray, nullable
from market.barstore import BarRow
from market.models import Bar, Instrument
from market.timeframes import timeframe_seconds

log = logging.getLogger(__name__)

_series: dict[tuple[int, str], LiveIndicators] = {}
_lock = threading.Lock()


@lru_cache(maxsize=1)
def live_specs() -> tuple[IndicatorSpec, ...]:
    """What is published live: every indicator of the catalogue with its default parameters."""
    return tuple(default_specs())


def window_bars(timeframe: str) -> int:
    """Bars a live series is opened on: the longest history any published indicator needs."""
    return max(spec.history_bars(timeframe_seconds(timeframe)) for spec in live_specs()) + 1


def live_indicator_values(row: BarRow) -> dict[str, Values] | None:
    """The published indicators' values at `row`, a final bar just stored; None if not available."""
    return live_indicator_values_many([row])[0]


def live_indicator_values_many(rows: Sequence[BarRow]) -> list[dict[str, Values] | None]:
    """`live_indicator_values` of each of `rows` (stored bars, in the order they were stored;
    non-final ones get None). Each series' gaps are looked up in one query for the whole batch, not
    one per bar: a catch-up publishes thousands of bars of a series, many of them after a minute
    without trades."""
    values: list[dict[str, Values] | None] = [None] * len(rows)
    by_series: dict[tuple[int, str], list[int]] = {}
    for index, row in enumerate(rows):
        if row.final:
            by_series.setdefault((row.instrument_id, row.timeframe), []).append(index)
    with _lock:
        for series_key, indexes in by_series.items():
            series_rows = [rows[index] for index in indexes]
            try:
                series_values = _advance_series(series_key, series_rows)
            except Exception:
                _reopen_later(series_key)
                continue
            for index, value in zip(indexes, series_values, strict=True):
                values[index] = value
    return values


def _reopen_later(series_key: tuple[int, str]) -> None:
    """After a failure (logged here, from within its `except`): the series starts afresh from the
    database on its next bar."""
    log.exception("live indicators failed for %s %s; reopening on the next bar", *series_key)
    _series.pop(series_key, None)
    _kept_windows.pop(series_key, None)


def forget_live_state() -> None:
    """Drop every live series (tests; a process that wants to reread the database)."""
    with _lock:
        _series.clear()
        _kept_windows.clear()


# From this many final bars of a series in one call on, their values come from one vectorized pass
# over the stored bars (about 1 ms for 13 indicators over a few thousand bars) instead of a stream
# update per bar (about 40 microseconds each): a catch-up publishes thousands at once.
BATCH_MIN_BARS = 64


def _advance_series(series_key: tuple[int, str], rows: list[BarRow]) -> list[dict[str, Values] | None]:
    if len(rows) >= BATCH_MIN_BARS:
        batch = _batch_values(series_key, rows)
        if batch is not None:
            return batch
    step = timeframe_seconds(series_key[1])
    stored: StoredTimes | None = None
    values: list[dict[str, Values] | None] = []
    for row in rows:
        time = int(row.time.timestamp())
        live = _series.get(series_key)
        if live is not None and live.last_time is not None and time > live.last_time:
            follows = time - live.last_time == step
            if not follows:  # a gap: is it one without trades, or are there stored bars we did not see?
                if stored is None or live.last_time < stored.start:  # (after a reopen at an older bar)
                    stored = StoredTimes.between(series_key, live.last_time, rows)
                follows = stored.none_between(live.last_time, time)
            if follows:
                values.append(dict(live.update(LiveBar(time, row.open, row.high, row.low, row.close, row.volume))))
                continue
        live = _open(*series_key, time)
        if live is None:
            _series.pop(series_key, None)
            values.append(None)
            continue
        _series[series_key] = live
        values.append(dict(live.values))
    return values


class StoredTimes:
    """The times of a series' stored bars over a batch's span, read once (epoch seconds, sorted)."""

    def __init__(self, start: int, end: int, times: list[int]) -> None:
        self.start, self.end, self.times = start, end, times

    @classmethod
    def between(cls, series_key: tuple[int, str], last_time: int, rows: Sequence[BarRow]) -> StoredTimes:
        """Covering (last_time, the batch's last bar]: the later rows' gaps need no query of their own."""
        end = max(int(row.time.timestamp()) for row in rows)
        times = Bar.objects.for_series(*series_key).filter(time__gt=queries.utc(last_time), time__lte=queries.utc(end))
        return cls(last_time, end, sorted(int(t.timestamp()) for t in times.values_list("time", flat=True)))

    def none_between(self, after: int, before: int) -> bool:
        """Whether no stored bar lies strictly between the two times (both inside the span read)."""
        index = bisect_right(self.times, after)
        return index == len(self.times) or self.times[index] >= before


def _batch_values(series_key: tuple[int, str], rows: list[BarRow]) -> list[dict[str, Values] | None] | None:
    """The values at each of `rows` from the batch indicators (see `_batch_columns`), as one
    `{key: {output: value}}` per row; None (the caller goes bar by bar) when there are no columns."""
    columns = _batch_columns(series_key, rows)
    if columns is None:
        return None
    if not columns:
        return [{} for _ in rows]
    keys = list(columns)
    per_key = [
        [dict(zip(outputs, at_row, strict=True)) for at_row in zip(*map(nullable, outputs.values()), strict=True)]
        for outputs in columns.values()
    ]
    # Transposed with zip rather than filled value by value: a catch-up publishes tens of thousands of
    # bars with some twenty values each, and this runs beside the collector's event loop.
    return [dict(zip(keys, at_row, strict=True)) for at_row in zip(*per_key, strict=True)]


def live_indicator_columns(series_key: tuple[int, str], rows: list[BarRow]) -> IndicatorColumns | None:
    """The published indicators at each of `rows` (final bars of one series just stored, oldest
    first) as columns, `{key: {output: values}}` with NaN where there is no value, from one
    vectorized pass; the live series carries on after the last row. None when the rows do not allow
    it (see `_batch_columns`): then `live_indicator_values_many` takes them bar by bar. For the
    columnar batch messages of `market.services`: no dict per bar at all."""
    with _lock:
        try:
            return _batch_columns(series_key, rows)
        except Exception:
            _reopen_later(series_key)
            return None


type IndicatorColumns = dict[str, dict[str, FloatArray]]


def _batch_columns(series_key: tuple[int, str], rows: list[BarRow]) -> IndicatorColumns | None:
    """The values at each of `rows` from the batch indicators over the stored bars (a window before
    the first row, then every stored bar up to the last, published or not), and the live series
    reopened at the last row; None unless the rows are stored and in time order. The values equal
    the bar-by-bar ones to the indicators' seed tolerance, as after any reopen."""
    times = [int(row.time.timestamp()) for row in rows]
    if any(later <= earlier for earlier, later in pairwise(times)):
        return None  # a correction of an older bar in the batch: reopened bar by bar
    instrument_id, timeframe = series_key
    instrument = Instrument.objects.select_related("exchange").filter(pk=instrument_id).first()
    if instrument is None:
        return None
    size = window_bars(timeframe)
    bars, offset = _bars_up_to(series_key, rows, times, size)
    positions = np.searchsorted(bars.time, times)
    if positions[-1] >= len(bars) or not np.array_equal(bars.time[positions], times):
        return None  # not stored (yet)
    context = queries.instrument_context(instrument)
    if offset is None:
        offset = queries.obv_at(instrument_id, timeframe, int(bars.time[0])) - float(bars.volume[0])
    columns: IndicatorColumns = {}
    obv: FloatArray | None = None  # as TA-Lib counts it over `bars`: from the first bar's volume
    for spec in live_specs():
        outputs = columns[spec.key] = {}
        for output, series in compute_many([spec], bars, context)[spec.key].items():
            if spec.name == "obv":
                obv, series = series, series + offset
            outputs[output] = series[positions]
    # Carry on bar by bar from the last row: the live series opened on the window ending there.
    last = int(positions[-1])
    window = _Window.of(bars, max(0, last + 1 - size), last, obv, offset)
    _series[series_key] = LiveIndicators(live_specs(), window.bars, context, obv_offset=window.obv_offset)
    _kept_windows[series_key] = _Window.of(bars, max(0, last + 2 - size), last, obv, offset)
    return columns


@dataclass(slots=True)
class _Window:
    """Bars of a series up to a batch's last row and the OBV offset at the first of them: the window
    a live series opens on, and (one bar shorter, kept in `_kept_windows`) the bars before the next
    batch of the series, which then need no read of a day of bars."""

    bars: Bars
    obv_offset: float

    @classmethod
    def of(cls, bars: Bars, start: int, last: int, obv: FloatArray | None, offset: float) -> _Window:
        """`bars[start:last + 1]` and the OBV offset of a series that starts there (`obv` as TA-Lib
        counts it over `bars`, `offset` what turns it into the series' OBV)."""
        start_offset = 0.0 if obv is None else offset + float(obv[start]) - float(bars.volume[start])
        return cls(bars.slice(start, last + 1), start_offset)


_kept_windows: dict[tuple[int, str], _Window] = {}


def _bars_up_to(
    series_key: tuple[int, str], rows: list[BarRow], times: list[int], size: int
) -> tuple[Bars, float | None]:
    """The stored bars the batch indicators need for `rows`: the `size - 1` before the first row,
    then every one up to the last row; and the OBV offset at the first of them when known."""
    instrument_id, timeframe = series_key
    series = Bar.objects.for_series(*series_key)
    kept = _kept_windows.pop(series_key, None)
    if kept is not None and len(kept.bars):
        # The last batch of the series ended right before these rows (nothing else stored since, the
        # usual case in a catch-up): its window is this one's, with no read of a day of bars.
        since = series.filter(time__gt=queries.utc(int(kept.bars.time[-1])), time__lte=rows[-1].time)
        if since.count() == len(rows):
            return _concatenated(kept.bars, _rows_as_bars(rows, times)), kept.obv_offset
    if series.filter(time__gte=rows[0].time, time__lte=rows[-1].time).count() == len(rows):
        # Nothing else is stored over the rows' span: only the window before them is read; the rows,
        # just stored, are the rest (parsing their times back costs more than the indicators).
        before = queries.load_bars(instrument_id, timeframe, None, times[0], limit=size - 1)
        return _concatenated(before, _rows_as_bars(rows, times)), None
    return queries.load_bars(instrument_id, timeframe, times[0], times[-1] + 1, before=size - 1), None


_ROW_FIELDS = tuple(BarRow._fields.index(name) for name in COLUMNS)


def _rows_as_bars(rows: list[BarRow], times: list[int]) -> Bars:
    columns = list(zip(*rows, strict=True))  # one transposition in C, not a Python loop per column
    return Bars.from_columns(times, *(columns[field] for field in _ROW_FIELDS))


def _concatenated(first: Bars, second: Bars) -> Bars:
    return Bars(*(np.concatenate([getattr(first, name), getattr(second, name)]) for name in Bars.__slots__))


def _open(instrument_id: int, timeframe: str, time: int) -> LiveIndicators | None:
    instrument = Instrument.objects.select_related("exchange").filter(pk=instrument_id).first()
    if instrument is None:
        return None
    window = queries.load_bars(instrument_id, timeframe, None, time + 1, limit=window_bars(timeframe))
    if len(window) == 0 or int(window.time[-1]) != time:
        return None  # the bar is not stored (yet): nothing consistent to start from
    offset = queries.obv_at(instrument_id, timeframe, int(window.time[0])) - float(window.volume[0])
    return LiveIndicators(live_specs(), window, queries.instrument_context(instrument), obv_offset=offset)

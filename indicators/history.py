"""Indicator and feature series over a range of stored bars, with the history before it they need."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from indicators import queries
from indicators.cache import Series, SeriesRequest, cached_series
from indicators.catalogue import IndicatorSpec
from indicators.features import compute_features, feature_history_bars
from indicators.series import FloatArray, IntArray
from market.models import Instrument
from market.timeframes import timeframe_seconds


@dataclass(frozen=True, slots=True)
class IndicatorHistory:
    time: IntArray  # UTC open times, epoch seconds, of every bar in range
    series: dict[str, Series]  # by spec key, each aligned on `time`


def _seconds(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp())


def indicator_history(
    instrument: Instrument,
    timeframe: str,
    specs: list[IndicatorSpec],
    *,
    start: datetime | None,
    end: datetime | None,
    limit: int,
) -> IndicatorHistory:
    """The indicators over the bars in [start, end) (at most `limit`; without start, the newest),
    each value computed with its full warm-up history before `start`."""
    edges = queries.range_edges(instrument.pk, timeframe, _seconds(start), _seconds(end), limit)
    if edges is None:
        empty = np.empty(0, dtype=np.int64)
        return IndicatorHistory(empty, {spec.key: Series(empty, {}) for spec in specs})
    request = SeriesRequest(
        instrument.pk, timeframe, timeframe_seconds(timeframe), queries.instrument_context(instrument), *edges
    )
    series = cached_series(request, specs)
    # Entries computed at different moments may hold different bars if one arrived in between:
    # align every series on the union of their times so the columns always line up.
    times = np.unique(np.concatenate([s.time for s in series.values()])) if series else np.empty(0, np.int64)
    return IndicatorHistory(times, {key: _align(s, times) for key, s in series.items()})


def _align(series: Series, times: IntArray) -> Series:
    if np.array_equal(series.time, times):
        return series
    positions = np.searchsorted(times, series.time)
    outputs: dict[str, FloatArray] = {}
    for name, values in series.outputs.items():
        aligned = np.full(len(times), np.nan)
        aligned[positions] = values
        outputs[name] = aligned
    return Series(times, outputs)


def feature_history(
    instrument: Instrument,
    timeframe: str,
    *,
    start: datetime | None,
    end: datetime | None,
    limit: int,
    names: list[str] | None = None,
) -> pd.DataFrame:
    """The ML features of the bars in [start, end), computed with the history they need before."""
    edges = queries.range_edges(instrument.pk, timeframe, _seconds(start), _seconds(end), limit)
    if edges is None:
        return compute_features(queries.load_bars(instrument.pk, timeframe, 0, 0), names=names)
    first, last = edges
    history = feature_history_bars(timeframe_seconds(timeframe))
    bars = queries.load_bars(instrument.pk, timeframe, first, last + 1, before=history)
    frame = compute_features(bars, queries.instrument_context(instrument), names)
    return frame.iloc[int(np.searchsorted(bars.time, first)) :]

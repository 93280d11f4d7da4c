"""The series rules compare: price fields, indicator outputs, lagged copies, the volume average. Pure.

A series is named by a hashable key, so that every rule of a feed that needs "EMA 20 of the close"
shares one computation. Indicators are computed by the `indicators` app (`indicators.compute`),
the product's one implementation of them, so an alert sees exactly the values a chart shows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import talib

from alerts.rules import Operand
from indicators.catalogue import IndicatorSpec
from indicators.compute import Context, compute
from indicators.series import Bars as IndicatorBars

FloatArray = npt.NDArray[np.float64]
# ("field", "close") | ("ind", name, params, output) | ("lag", bars, inner key) | ("volume_average", bars)
SeriesKey = tuple[Any, ...]


def field_key(name: str) -> SeriesKey:
    return ("field", name)


def operand_key(operand: Operand) -> SeriesKey:
    if operand.is_price:
        return field_key(operand.indicator)
    return ("ind", operand.indicator, operand.params, operand.output)


def lag_key(inner: SeriesKey, bars: int) -> SeriesKey:
    return ("lag", bars, inner)


def volume_average_key(bars: int) -> SeriesKey:
    """The mean volume of the `bars` bars before the current one (a spike is not in its own average)."""
    return ("volume_average", bars)


def warmup_bars(key: SeriesKey, bar_seconds: int) -> int:
    """How many bars a window needs so that the series' last two values are settled: for an
    indicator, its lookback plus the bars after which its seed no longer matters (the indicators
    catalogue's `history_bars`), so a window gives the same values as the whole history."""
    kind = key[0]
    if kind == "field":
        return 2
    if kind == "lag":
        return int(key[1]) + warmup_bars(key[2], bar_seconds)
    if kind == "volume_average":
        return int(key[1]) + 2
    return IndicatorSpec(key[1], key[2]).history_bars(bar_seconds) + 2


Cache = dict[tuple[SeriesKey, int], FloatArray]


def series_values(key: SeriesKey, bars: IndicatorBars, cache: Cache, context: Context | None = None) -> FloatArray:
    """The series `key` over `bars` (the newest bars of one feed; `context`: its instrument's, for
    indicators). Every result, all outputs of an indicator included, is kept in `cache` under
    (key, number of bars)."""
    count = len(bars.time)
    found = cache.get((key, count))
    if found is not None:
        return found
    kind = key[0]
    result: FloatArray
    if kind == "field":
        result = getattr(bars, key[1])
    elif kind == "lag":
        inner = series_values(key[2], bars, cache, context)
        result = np.full_like(inner, np.nan)
        if key[1] < count:
            result[key[1] :] = inner[: count - key[1]]
    elif kind == "volume_average":
        average = talib.SMA(bars.volume, timeperiod=key[1]) if key[1] > 1 else bars.volume.copy()
        result = np.full_like(average, np.nan)
        result[1:] = average[:-1]
    else:
        _, name, params, _output = key
        for output, values in compute(IndicatorSpec(name, params), bars, context).items():
            cache[(("ind", name, params, output), count)] = values
        return cache[(key, count)]
    cache[(key, count)] = result
    return result


def last_two(key: SeriesKey, bars: IndicatorBars, cache: Cache, context: Context | None = None) -> tuple[float, float]:
    """The series' current and previous values (NaN where undefined). Price fields, their lags and
    the volume average are read straight from the bars; indicators are computed (and cached)."""
    kind = key[0]
    if kind == "field":
        values = getattr(bars, key[1])
        back = 1
    elif kind == "lag" and key[2][0] == "field":
        values = getattr(bars, key[2][1])
        back = 1 + key[1]
    elif kind == "volume_average":
        return volume_average_last_two(bars.volume, int(key[1]))
    else:
        values = series_values(key, bars, cache, context)
        back = 1
    return last_two_values(values, back)


def last_two_values(values: FloatArray, back: int = 1) -> tuple[float, float]:
    """The value `back` places from the end and the one before it, NaN where there is none."""
    size = len(values)
    return (
        float(values[-back]) if size >= back else np.nan,
        float(values[-back - 1]) if size > back else np.nan,
    )


def volume_average_last_two(volume: FloatArray, length: int) -> tuple[float, float]:
    """The mean volume of the `length` bars before the newest one, and the same one bar earlier."""
    count = len(volume)
    current = float(volume[-length - 1 : -1].sum()) / length if count > length else np.nan
    previous = float(volume[-length - 2 : -2].sum()) / length if count > length + 1 else np.nan
    return current, previous

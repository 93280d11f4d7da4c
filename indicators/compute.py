"""Indicator series over a run of bars, with TA-Lib as the engine. Pure: no Django imports.

CCI goes through pandas-ta with TA-Lib as its backend; the other twelve call TA-Lib directly. With
TA-Lib installed, pandas-ta's default mode calls these same TA-Lib functions with the same arguments
(a test checks the values are identical), but its wrappers add a fixed cost per call (copies of every
input and output column, DataFrames, extra columns) that is more than half of TA-Lib's own time for
every indicator except CCI, so they miss the goal of 1.5x of TA-Lib; and `stoch` and `adx` lose
parameters on the way (docs/indicators.md, "Why not all through pandas-ta", has the measurements).
pandas-ta's pure-pandas mode is never used: its values are not the conventional ones.

Every function returns float64 arrays as long as the input, NaN where there is no value yet.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd
import talib

from indicators.catalogue import MA_TYPES, IndicatorSpec
from indicators.series import Bars, FloatArray, IntArray, anchor_periods
from indicators.sessions import SessionTable

Outputs = dict[str, FloatArray]
TALIB_CCI_CONSTANT = 0.015


@dataclass(frozen=True, slots=True)
class Context:
    """What an indicator may need to know about the instrument: stocks trade in their exchange's
    sessions (built from its calendar at the edge), other instruments around the clock."""

    sessions: SessionTable | None = None

    @property
    def calendar(self) -> str | None:
        return self.sessions.calendar if self.sessions is not None else None


def resolve_anchor(anchor: str, context: Context) -> tuple[str, SessionTable | None]:
    """VWAP's anchor as (period, sessions): `auto` is the session for stocks, the UTC day otherwise;
    `session` without sessions (crypto) is the UTC day too."""
    if anchor in ("auto", "session"):
        return ("session", context.sessions) if context.sessions is not None else ("day", None)
    return anchor, None


def _sma(bars: Bars, p: dict[str, Any], context: Context) -> Outputs:
    return {"sma": talib.SMA(bars.source(p["source"]), p["length"])}


def _ema(bars: Bars, p: dict[str, Any], context: Context) -> Outputs:
    return {"ema": talib.EMA(bars.source(p["source"]), p["length"])}


def _wma(bars: Bars, p: dict[str, Any], context: Context) -> Outputs:
    return {"wma": talib.WMA(bars.source(p["source"]), p["length"])}


def _rsi(bars: Bars, p: dict[str, Any], context: Context) -> Outputs:
    return {"rsi": talib.RSI(bars.source(p["source"]), p["length"])}


def _macd(bars: Bars, p: dict[str, Any], context: Context) -> Outputs:
    macd, signal, hist = talib.MACD(bars.source(p["source"]), p["fast"], p["slow"], p["signal"])
    return {"macd": macd, "signal": signal, "hist": hist}


def bollinger_extras(source: FloatArray, upper: FloatArray, middle: FloatArray, lower: FloatArray) -> Outputs:
    """Bandwidth (percent of the middle band) and %B; %B has no value while the bands touch."""
    # In place, and the width array becomes the bandwidth: over a million bars each temporary
    # array costs about as much as the arithmetic, more once the allocator hands out fresh pages.
    bandwidth = np.subtract(upper, lower)
    percent_b = np.subtract(source, lower)
    with np.errstate(divide="ignore", invalid="ignore"):
        percent_b /= bandwidth
        percent_b[bandwidth <= 0] = np.nan  # where the width is NaN, so is %B already
        bandwidth *= 100.0
        bandwidth /= middle
    return {"bandwidth": bandwidth, "percent_b": percent_b}


def _bbands(bars: Bars, p: dict[str, Any], context: Context) -> Outputs:
    source = bars.source(p["source"])
    upper, middle, lower = talib.BBANDS(source, p["length"], p["std_up"], p["std_down"], MA_TYPES[p["mamode"]])
    return {"upper": upper, "middle": middle, "lower": lower, **bollinger_extras(source, upper, middle, lower)}


def _atr(bars: Bars, p: dict[str, Any], context: Context) -> Outputs:
    return {"atr": talib.ATR(bars.high, bars.low, bars.close, p["length"])}


def _stoch(bars: Bars, p: dict[str, Any], context: Context) -> Outputs:
    k, d = talib.STOCH(
        bars.high,
        bars.low,
        bars.close,
        fastk_period=p["k"],
        slowk_period=p["smooth_k"],
        slowk_matype=MA_TYPES[p["k_mamode"]],
        slowd_period=p["d"],
        slowd_matype=MA_TYPES[p["d_mamode"]],
    )
    return {"k": k, "d": d}


def _obv(bars: Bars, p: dict[str, Any], context: Context) -> Outputs:
    return {"obv": talib.OBV(bars.source(p["source"]), bars.volume)}


def anchored_vwap(bars: Bars, periods: IntArray) -> FloatArray:
    """TA-Lib's VWAP restarted at every change of `periods`; NaN while a period has no volume.

    Long periods (1m bars anchored to the day: 1,440 bars each) call TA-Lib once per period;
    short ones (hourly and daily bars) take a vectorised path, running sums minus their value
    before each period, so a million daily bars are not a million calls.
    """
    n = len(bars)
    if n == 0:
        return np.empty(0)
    starts = np.concatenate([[0], np.flatnonzero(periods[1:] != periods[:-1]) + 1])
    if len(starts) * 64 <= n:
        result = np.empty(n)
        bounds = [*starts.tolist(), n]
        for first, stop in pairwise(bounds):
            part = slice(first, stop)
            result[part] = talib.VWAP(bars.high[part], bars.low[part], bars.close[part], bars.volume[part])
        result[result == 0.0] = np.nan  # TA-Lib's answer while the period has no volume (prices are > 0)
        return result
    weighted = np.cumsum((bars.high + bars.low + bars.close) / 3.0 * bars.volume)
    volume = np.cumsum(bars.volume)
    lengths = np.diff(np.append(starts, n))
    before = starts[1:] - 1  # the first period starts at 0: nothing to subtract
    weighted -= np.repeat(np.concatenate([[0.0], weighted[before]]), lengths)
    volume -= np.repeat(np.concatenate([[0.0], volume[before]]), lengths)
    with np.errstate(divide="ignore", invalid="ignore"):
        vwap: FloatArray = weighted / volume
    vwap[~(volume > 0)] = np.nan
    return vwap


def _vwap(bars: Bars, p: dict[str, Any], context: Context) -> Outputs:
    anchor, sessions = resolve_anchor(p["anchor"], context)
    return {"vwap": anchored_vwap(bars, anchor_periods(bars.time, anchor, sessions))}


def _adx(bars: Bars, p: dict[str, Any], context: Context) -> Outputs:
    high, low, close, length = bars.high, bars.low, bars.close, p["length"]
    return {
        "adx": talib.ADX(high, low, close, length),
        "plus_di": talib.PLUS_DI(high, low, close, length),
        "minus_di": talib.MINUS_DI(high, low, close, length),
    }


class EngineMissing(RuntimeError):
    """pandas-ta would compute without TA-Lib, in its pure-pandas mode, whose values are not TA-Lib's."""


def pandas_ta_with_talib() -> Any:
    """pandas-ta, once it is sure to call TA-Lib: with `talib=True` but no TA-Lib found at its import,
    it silently falls back to its pure-pandas mode (CCI's misplaced bracket); refuse instead."""
    import pandas_ta  # imported here: it adds about a second to the start of every process

    if not pandas_ta.Imports["talib"]:
        raise EngineMissing("pandas-ta does not see TA-Lib; the indicators are computed with TA-Lib only")
    return pandas_ta


def _cci(bars: Bars, p: dict[str, Any], context: Context) -> Outputs:
    """Through pandas-ta, whose default mode calls TA-Lib's CCI (CCI's own cost hides the wrapper's)."""
    pandas_ta = pandas_ta_with_talib()
    series = {name: pd.Series(getattr(bars, name), copy=False) for name in ("high", "low", "close")}
    found = pandas_ta.cci(series["high"], series["low"], series["close"], p["length"], talib=True)
    if found is None:  # pandas-ta answers None when there are fewer bars than `length`
        return {"cci": np.full(len(bars), np.nan)}
    # A copy: pandas hands out a read-only view of a Series' values, and every output is a plain array.
    cci = found.to_numpy(dtype=np.float64, copy=True)
    if p["c"] != TALIB_CCI_CONSTANT:
        # With TA-Lib, pandas-ta ignores `c`: TA-Lib fixes Lambert's constant at 0.015, and CCI is
        # inversely proportional to it, so any other constant is an exact rescaling.
        cci = cci * (TALIB_CCI_CONSTANT / p["c"])
    return {"cci": cci}


def _mfi(bars: Bars, p: dict[str, Any], context: Context) -> Outputs:
    return {"mfi": talib.MFI(bars.high, bars.low, bars.close, bars.volume, p["length"])}


COMPUTERS: dict[str, Callable[[Bars, dict[str, Any], Context], Outputs]] = {
    "sma": _sma,
    "ema": _ema,
    "wma": _wma,
    "rsi": _rsi,
    "macd": _macd,
    "bbands": _bbands,
    "atr": _atr,
    "stoch": _stoch,
    "obv": _obv,
    "vwap": _vwap,
    "adx": _adx,
    "cci": _cci,
    "mfi": _mfi,
}


def compute(spec: IndicatorSpec, bars: Bars, context: Context | None = None) -> Outputs:
    """Every output of one indicator over `bars`; NaN before its first value."""
    if len(bars) == 0:
        return {out.name: np.empty(0) for out in spec.definition.outputs}
    outputs = COMPUTERS[spec.name](bars, spec.values, context or Context())
    # TA-Lib returns its outputs in its own order; the catalogue's order is the one clients see.
    return {out.name: np.asarray(outputs[out.name], dtype=np.float64) for out in spec.definition.outputs}


def computer(spec: IndicatorSpec) -> Callable[[Bars, Context | None], Outputs]:
    """`compute` for one spec, prepared once: callers that compute the same indicator for many
    feeds (the alert engine on every bar close) skip the per-call lookups. Outputs by name, in
    TA-Lib's order; `bars` must not be empty."""
    function, values = COMPUTERS[spec.name], spec.values
    default = Context()

    def run(bars: Bars, context: Context | None = None) -> Outputs:
        return function(bars, values, context or default)

    return run


def compute_many(specs: Iterable[IndicatorSpec], bars: Bars, context: Context | None = None) -> dict[str, Outputs]:
    return {spec.key: compute(spec, bars, context) for spec in specs}

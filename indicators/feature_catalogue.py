"""The ML features: name, group, description, formula and a function of `FeatureInputs` each.

Pure: no Django imports. Every function looks only backwards (shift by positive lags, trailing
rolling windows, causal indicators): the row of a bar uses that bar and earlier ones.
docs/ml_features.md lists them all (a test keeps it in step).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from indicators.catalogue import IndicatorSpec
from indicators.feature_inputs import LN2, Feature, FeatureInputs, Fn, zscore
from indicators.series import IntArray
from indicators.sessions import SessionTable


def _with(fn: Callable[..., Any], *args: Any) -> Fn:
    """fn(x, *args) as a feature function: binds a loop variable (a horizon, a window) early."""
    return lambda x: fn(x, *args)


def _returns() -> list[Feature]:
    features = [
        Feature(
            f"ret_{h}",
            "returns",
            f"Simple return over {h} bar{'s' * (h > 1)}",
            f"close / close[t-{h}] - 1",
            _with(lambda x, h: x.close / x.close.shift(h) - 1, h),
        )
        for h in (1, 2, 3, 5, 10, 20, 60)
    ]
    features += [
        Feature(
            f"logret_{h}",
            "returns",
            f"Log return over {h} bar{'s' * (h > 1)}",
            f"ln(close / close[t-{h}])",
            _with(lambda x, h: np.log(x.close / x.close.shift(h)), h),
        )
        for h in (1, 5, 20, 60)
    ]
    return features


def _volatility() -> list[Feature]:
    features = [
        Feature(
            f"rvol_{w}",
            "volatility",
            f"Realized volatility: standard deviation of 1-bar log returns over {w} bars",
            f"std(logret_1, {w} bars, ddof=1)",
            _with(lambda x, w: x.logret.rolling(w).std(), w),
        )
        for w in (10, 20, 60)
    ]
    features.append(
        Feature(
            "parkinson_vol_20",
            "volatility",
            "Parkinson high-low volatility over 20 bars",
            "sqrt(mean(ln(high / low)^2, 20) / (4 ln 2))",
            lambda x: np.sqrt(x.series(np.log(x.high / x.low) ** 2).rolling(20).mean() / (4 * LN2)),
        )
    )
    features.append(
        Feature(
            "garman_klass_vol_20",
            "volatility",
            "Garman-Klass OHLC volatility over 20 bars",
            "sqrt(mean(0.5 ln(high / low)^2 - (2 ln 2 - 1) ln(close / open)^2, 20))",
            lambda x: np.sqrt(
                x.series(0.5 * np.log(x.high / x.low) ** 2 - (2 * LN2 - 1) * np.log(x.close / x.open) ** 2)
                .rolling(20)
                .mean()
            ),
        )
    )
    return features


def _zscores() -> list[Feature]:
    return [
        Feature(
            "zscore_close_20",
            "zscore",
            "Close's z-score in its 20-bar window",
            "(close - mean(close, 20)) / std(close, 20, ddof=0)",
            lambda x: zscore(x.close, 20),
        ),
        Feature(
            "zscore_close_60",
            "zscore",
            "Close's z-score in its 60-bar window",
            "(close - mean(close, 60)) / std(close, 60, ddof=0)",
            lambda x: zscore(x.close, 60),
        ),
        Feature(
            "zscore_volume_20",
            "zscore",
            "Volume's z-score in its 20-bar window",
            "(volume - mean(volume, 20)) / std(volume, 20, ddof=0)",
            lambda x: zscore(x.volume, 20),
        ),
        Feature(
            "zscore_logret_20",
            "zscore",
            "1-bar log return's z-score in its 20-bar window",
            "(logret_1 - mean(logret_1, 20)) / std(logret_1, 20, ddof=0)",
            lambda x: zscore(x.logret, 20),
        ),
        Feature(
            "zscore_range_20",
            "zscore",
            "Relative range's z-score in its 20-bar window",
            "z-score of (high - low) / close over 20 bars",
            lambda x: zscore((x.high - x.low) / x.close, 20),
        ),
    ]


def _candle() -> list[Feature]:
    def true_range_pct(x: FeatureInputs) -> pd.Series:
        previous = x.close.shift(1)
        true_range = pd.concat([x.high - x.low, (x.high - previous).abs(), (x.low - previous).abs()], axis=1).max(
            axis=1, skipna=False
        )
        return true_range / previous

    return [
        Feature(
            "range_pct",
            "candle",
            "Bar range relative to the close",
            "(high - low) / close",
            lambda x: (x.high - x.low) / x.close,
        ),
        Feature(
            "true_range_pct",
            "candle",
            "True range relative to the previous close",
            "max(high - low, |high - close[t-1]|, |low - close[t-1]|) / close[t-1]",
            true_range_pct,
        ),
        Feature(
            "body_pct",
            "candle",
            "Candle body relative to the open",
            "(close - open) / open",
            lambda x: (x.close - x.open) / x.open,
        ),
        Feature(
            "body_to_range",
            "candle",
            "Signed body as a share of the range (NaN if no range)",
            "(close - open) / (high - low)",
            lambda x: (x.close - x.open) / x.range,
        ),
        Feature(
            "upper_wick_ratio",
            "candle",
            "Upper wick as a share of the range",
            "(high - max(open, close)) / (high - low)",
            lambda x: (x.high - np.maximum(x.open, x.close)) / x.range,
        ),
        Feature(
            "lower_wick_ratio",
            "candle",
            "Lower wick as a share of the range",
            "(min(open, close) - low) / (high - low)",
            lambda x: (np.minimum(x.open, x.close) - x.low) / x.range,
        ),
        Feature(
            "close_location",
            "candle",
            "Where the close sits in the range (0 = low, 1 = high)",
            "(close - low) / (high - low)",
            lambda x: (x.close - x.low) / x.range,
        ),
        Feature(
            "gap_pct",
            "candle",
            "Gap between this open and the previous close",
            "open / close[t-1] - 1",
            lambda x: x.open / x.close.shift(1) - 1,
        ),
    ]


def _volume() -> list[Feature]:
    def up_volume_ratio(x: FeatureInputs) -> pd.Series:
        up = x.volume.where(x.close > x.close.shift(1), 0.0)
        return up.rolling(20).sum() / x.volume.rolling(20).sum()

    return [
        Feature("log_volume", "volume", "Log volume", "ln(1 + volume)", lambda x: np.log1p(x.volume)),
        Feature(
            "volume_ratio_20",
            "volume",
            "Volume relative to its 20-bar mean",
            "volume / mean(volume, 20)",
            lambda x: x.volume / x.volume.rolling(20).mean(),
        ),
        Feature(
            "volume_ratio_60",
            "volume",
            "Volume relative to its 60-bar mean",
            "volume / mean(volume, 60)",
            lambda x: x.volume / x.volume.rolling(60).mean(),
        ),
        Feature(
            "log_dollar_volume",
            "volume",
            "Log of traded value in the quote currency",
            "ln(1 + volume * close)",
            lambda x: np.log1p(x.volume * x.close),
        ),
        Feature(
            "volume_change_1",
            "volume",
            "Log change of volume from the previous bar",
            "ln((1 + volume) / (1 + volume[t-1]))",
            lambda x: np.log1p(x.volume) - np.log1p(x.volume.shift(1)),
        ),
        Feature(
            "up_volume_ratio_20",
            "volume",
            "Share of the last 20 bars' volume traded on up closes",
            "sum(volume if close > close[t-1], 20) / sum(volume, 20)",
            up_volume_ratio,
        ),
        Feature(
            "obv_slope_20",
            "volume",
            "OBV's change over 20 bars relative to the volume traded",
            "(OBV - OBV[t-20]) / sum(volume, 20)",
            lambda x: (x.indicator("obv") - x.indicator("obv").shift(20)) / x.volume.rolling(20).sum(),
        ),
        Feature(
            "vwap_distance",
            "volume",
            "Close relative to the anchored VWAP (UTC day, or session for stocks)",
            "close / VWAP - 1",
            lambda x: x.close / x.indicator("vwap") - 1,
        ),
        Feature(
            "mfi_14",
            "volume",
            "Money flow index, 14 bars, scaled to 0-1",
            "MFI(14) / 100",
            lambda x: x.indicator("mfi", length=14) / 100,
        ),
    ]


def _indicator_features() -> list[Feature]:
    features = [
        Feature(
            f"rsi_{n}",
            "indicator",
            f"RSI over {n} bars (Wilder), scaled to 0-1",
            f"RSI({n}) / 100",
            _with(lambda x, n: x.indicator("rsi", length=n) / 100, n),
        )
        for n in (7, 14, 28)
    ]
    features += [
        Feature(
            "macd_norm",
            "indicator",
            "MACD line (12/26) relative to the close",
            "MACD(12, 26, 9).macd / close",
            lambda x: x.indicator("macd", "macd") / x.close,
        ),
        Feature(
            "macd_signal_norm",
            "indicator",
            "MACD signal line relative to the close",
            "MACD(12, 26, 9).signal / close",
            lambda x: x.indicator("macd", "signal") / x.close,
        ),
        Feature(
            "macd_hist_norm",
            "indicator",
            "MACD histogram relative to the close",
            "MACD(12, 26, 9).hist / close",
            lambda x: x.indicator("macd", "hist") / x.close,
        ),
        Feature(
            "bb_percent_b_20",
            "indicator",
            "Bollinger %B (20 bars, 2 std)",
            "(close - lower) / (upper - lower)",
            lambda x: x.indicator("bbands", "percent_b"),
        ),
        Feature(
            "bb_bandwidth_20",
            "indicator",
            "Bollinger bandwidth (20 bars, 2 std) as a fraction",
            "(upper - lower) / middle",
            lambda x: x.indicator("bbands", "bandwidth") / 100,
        ),
        Feature(
            "atr_ratio_14",
            "indicator",
            "ATR(14) relative to the close",
            "ATR(14) / close",
            lambda x: x.indicator("atr", length=14) / x.close,
        ),
        Feature(
            "atr_change_20",
            "indicator",
            "Change of ATR(14) over 20 bars",
            "ATR(14) / ATR(14)[t-20] - 1",
            lambda x: x.indicator("atr", length=14) / x.indicator("atr", length=14).shift(20) - 1,
        ),
        Feature(
            "adx_14", "indicator", "ADX(14) scaled to 0-1", "ADX(14) / 100", lambda x: x.indicator("adx", "adx") / 100
        ),
        Feature(
            "di_spread_14",
            "indicator",
            "+DI minus -DI (14), scaled",
            "(+DI(14) - -DI(14)) / 100",
            lambda x: (x.indicator("adx", "plus_di") - x.indicator("adx", "minus_di")) / 100,
        ),
        Feature(
            "cci_20",
            "indicator",
            "CCI(20) scaled by 100",
            "CCI(20) / 100",
            lambda x: x.indicator("cci", length=20) / 100,
        ),
        Feature(
            "stoch_k",
            "indicator",
            "Slow stochastic %K (14, 3, 3) scaled to 0-1",
            "STOCH(14, 3, 3).k / 100",
            lambda x: x.indicator("stoch", "k") / 100,
        ),
        Feature(
            "stoch_d",
            "indicator",
            "Slow stochastic %D (14, 3, 3) scaled to 0-1",
            "STOCH(14, 3, 3).d / 100",
            lambda x: x.indicator("stoch", "d") / 100,
        ),
        Feature(
            "stoch_k_minus_d",
            "indicator",
            "%K minus %D, scaled",
            "(STOCH.k - STOCH.d) / 100",
            lambda x: (x.indicator("stoch", "k") - x.indicator("stoch", "d")) / 100,
        ),
        Feature(
            "ema_distance_20",
            "indicator",
            "Close relative to EMA(20)",
            "close / EMA(20) - 1",
            lambda x: x.close / x.indicator("ema", length=20) - 1,
        ),
        Feature(
            "ema_distance_50",
            "indicator",
            "Close relative to EMA(50)",
            "close / EMA(50) - 1",
            lambda x: x.close / x.indicator("ema", length=50) - 1,
        ),
        Feature(
            "sma_distance_200",
            "indicator",
            "Close relative to SMA(200)",
            "close / SMA(200) - 1",
            lambda x: x.close / x.indicator("sma", length=200) - 1,
        ),
        Feature(
            "wma_distance_20",
            "indicator",
            "Close relative to WMA(20)",
            "close / WMA(20) - 1",
            lambda x: x.close / x.indicator("wma", length=20) - 1,
        ),
        Feature(
            "ema_cross_20_50",
            "indicator",
            "EMA(20) relative to EMA(50)",
            "EMA(20) / EMA(50) - 1",
            lambda x: x.indicator("ema", length=20) / x.indicator("ema", length=50) - 1,
        ),
    ]
    return features


def _position() -> list[Feature]:
    return [
        Feature(
            f"dist_{side}_{w}",
            "position",
            f"Close relative to the {w}-bar {side}est {'high' if side == 'high' else 'low'}",
            f"close / {'max(high' if side == 'high' else 'min(low'}, {w}) - 1",
            _with(
                lambda x, w, side: (
                    x.close / (x.high.rolling(w).max() if side == "high" else x.low.rolling(w).min()) - 1
                ),
                w,
                side,
            ),
        )
        for w in (20, 60)
        for side in ("high", "low")
    ]


def _cycle(
    name: str, description: str, unit: str, period: int, value: Callable[[pd.DatetimeIndex], Any]
) -> list[Feature]:
    def encode(x: FeatureInputs, trig: Callable[[Any], Any]) -> pd.Series:
        return x.series(trig(2 * np.pi * np.asarray(value(x.wall_time), dtype=np.float64) / period))

    return [
        Feature(
            f"{name}_sin",
            "calendar",
            f"{description} (sine)",
            f"sin(2 pi {unit} / {period})",
            lambda x: encode(x, np.sin),
        ),
        Feature(
            f"{name}_cos",
            "calendar",
            f"{description} (cosine)",
            f"cos(2 pi {unit} / {period})",
            lambda x: encode(x, np.cos),
        ),
    ]


def _calendar() -> list[Feature]:
    return [
        *_cycle("hour", "UTC hour of the bar's open", "hour", 24, lambda t: t.hour + t.minute / 60),
        *_cycle("minute", "Minute of the hour", "minute", 60, lambda t: t.minute),
        *_cycle("dow", "UTC day of the week (Monday = 0)", "weekday", 7, lambda t: t.day_of_week + t.hour / 24),
        *_cycle("month", "Month of the year", "(month - 1)", 12, lambda t: t.month - 1),
        Feature(
            "is_weekend",
            "calendar",
            "1 on Saturday and Sunday (UTC)",
            "weekday >= 5",
            lambda x: x.series(x.wall_time.day_of_week >= 5),
        ),
    ]


def _between(hours: NDArray[Any], start: float, end: float) -> NDArray[Any]:
    return (hours >= start) & (hours < end)


def _sessions() -> list[Feature]:
    def utc_hours(x: FeatureInputs) -> NDArray[Any]:
        return np.asarray(x.wall_time.hour + x.wall_time.minute / 60, dtype=np.float64)

    def market(part: Callable[[SessionTable, IntArray], NDArray[np.bool_]]) -> Fn:
        """A flag from the exchange calendar's sessions (passed in the context); 0 without one."""

        def flag(x: FeatureInputs) -> pd.Series:
            sessions = x.context.sessions
            if sessions is None:
                return x.series(np.zeros(len(x.bars)))
            return x.series(part(sessions, x.bars.time))

        return flag

    return [
        Feature(
            "session_asia",
            "session",
            "Bar opens in Asian trading hours",
            "00:00 <= UTC time < 09:00",
            lambda x: x.series(_between(utc_hours(x), 0, 9)),
        ),
        Feature(
            "session_europe",
            "session",
            "Bar opens in European trading hours",
            "07:00 <= UTC time < 16:00",
            lambda x: x.series(_between(utc_hours(x), 7, 16)),
        ),
        Feature(
            "session_us",
            "session",
            "Bar opens in US trading hours",
            "13:30 <= UTC time < 20:00",
            lambda x: x.series(_between(utc_hours(x), 13.5, 20)),
        ),
        Feature(
            "market_regular",
            "session",
            "Stocks: bar opens in the regular session of a trading day (0 for crypto)",
            "session open <= time < session close (exchange calendar: 09:30-16:00 ET, 13:00 on early closes)",
            market(SessionTable.regular),
        ),
        Feature(
            "market_pre",
            "session",
            "Stocks: bar opens in pre-market hours of a trading day (0 for crypto)",
            "session open - 5h30 <= time < session open (04:00-09:30 ET)",
            market(SessionTable.pre_market),
        ),
        Feature(
            "market_post",
            "session",
            "Stocks: bar opens in after-hours trading of a trading day (0 for crypto)",
            "session close <= time < session close + 4h (16:00-20:00 ET, 13:00-17:00 on early closes)",
            market(SessionTable.post_market),
        ),
    ]


def _lags() -> list[Feature]:
    features = [
        Feature(
            f"logret_1_lag_{k}",
            "lag",
            f"1-bar log return {k} bar{'s' * (k > 1)} earlier",
            f"logret_1[t-{k}]",
            _with(lambda x, k: x.logret.shift(k), k),
        )
        for k in (1, 2, 3, 5, 10)
    ]
    features += [
        Feature(
            "rsi_14_lag_1",
            "lag",
            "RSI(14) one bar earlier, scaled to 0-1",
            "RSI(14)[t-1] / 100",
            lambda x: x.indicator("rsi", length=14).shift(1) / 100,
        ),
        Feature(
            "volume_ratio_20_lag_1",
            "lag",
            "volume_ratio_20 one bar earlier",
            "volume_ratio_20[t-1]",
            lambda x: (x.volume / x.volume.rolling(20).mean()).shift(1),
        ),
        Feature(
            "autocorr_20",
            "lag",
            "Autocorrelation of 1-bar log returns at lag 1 over 20 bars",
            "corr(logret_1, logret_1[t-1], 20)",
            lambda x: x.logret.rolling(20).corr(x.logret.shift(1)),
        ),
    ]
    return features


FEATURES: tuple[Feature, ...] = (
    *_returns(),
    *_volatility(),
    *_zscores(),
    *_candle(),
    *_volume(),
    *_indicator_features(),
    *_position(),
    *_calendar(),
    *_sessions(),
    *_lags(),
)
FEATURES_BY_NAME = {feature.name: feature for feature in FEATURES}
# Indicators the features use, for the warm-up: the longest needs this many bars before a row.
_FEATURE_INDICATORS = (
    IndicatorSpec.build("rsi", {"length": 28}),
    IndicatorSpec.build("macd"),
    IndicatorSpec.build("adx"),
    IndicatorSpec.build("ema", {"length": 50}),
    IndicatorSpec.build("sma", {"length": 200}),
    IndicatorSpec.build("stoch"),
    IndicatorSpec.build("vwap", {"anchor": "day"}),
)
ROLLING_HISTORY = 61  # longest window (60) plus the one-bar lag some features add


def feature_history_bars(bar_seconds: int) -> int:
    """Bars before the first row that the features need to have settled values."""
    return max(spec.history_bars(bar_seconds) for spec in _FEATURE_INDICATORS) + ROLLING_HISTORY

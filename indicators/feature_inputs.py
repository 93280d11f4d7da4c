"""What ML features are made of: the bars as pandas Series and the indicators, computed once.

Pure: no Django imports. The features themselves are in `feature_catalogue.py`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from indicators.catalogue import IndicatorSpec
from indicators.compute import Context, compute
from indicators.series import Bars

LN2 = math.log(2.0)


class FeatureInputs:
    """The bars as pandas Series, with indicators computed once however many features use them."""

    def __init__(self, bars: Bars, context: Context) -> None:
        self.bars = bars
        self.context = context
        self.index = pd.RangeIndex(len(bars))
        self._indicators: dict[str, dict[str, pd.Series]] = {}

    def series(self, values: Any) -> pd.Series:
        return pd.Series(np.asarray(values, dtype=np.float64), index=self.index)

    @cached_property
    def open(self) -> pd.Series:
        return self.series(self.bars.open)

    @cached_property
    def high(self) -> pd.Series:
        return self.series(self.bars.high)

    @cached_property
    def low(self) -> pd.Series:
        return self.series(self.bars.low)

    @cached_property
    def close(self) -> pd.Series:
        return self.series(self.bars.close)

    @cached_property
    def volume(self) -> pd.Series:
        return self.series(self.bars.volume)

    @cached_property
    def logret(self) -> pd.Series:
        return self.series(np.log(self.close / self.close.shift(1)))

    @cached_property
    def range(self) -> pd.Series:
        """high - low, NaN where the bar has no range (so ratios over it are NaN, not infinite)."""
        return (self.high - self.low).where(self.high > self.low)

    @cached_property
    def wall_time(self) -> pd.DatetimeIndex:
        return pd.DatetimeIndex(pd.to_datetime(self.bars.time, unit="s", utc=True))

    def indicator(self, name: str, output: str | None = None, **params: Any) -> pd.Series:
        spec = IndicatorSpec.build(name, params)
        if spec.canonical not in self._indicators:
            values = compute(spec, self.bars, self.context)
            self._indicators[spec.canonical] = {key: self.series(value) for key, value in values.items()}
        return self._indicators[spec.canonical][output or name]


Fn = Callable[[FeatureInputs], Any]  # a Series or an array as long as the bars


@dataclass(frozen=True, slots=True)
class Feature:
    name: str
    group: str
    description: str
    formula: str
    fn: Fn


def zscore(values: pd.Series, window: int) -> pd.Series:
    return (values - values.rolling(window).mean()) / values.rolling(window).std(ddof=0)

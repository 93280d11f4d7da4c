"""Bars as columns of numpy arrays: the input of every indicator and feature. Pure: no Django imports."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

if TYPE_CHECKING:
    from indicators.sessions import SessionTable

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

COLUMNS = ("open", "high", "low", "close", "volume")
DAY = 86_400


@dataclass(frozen=True, slots=True)
class Bars:
    """OHLCV columns, oldest first; `time` is the bar's UTC open time in epoch seconds."""

    time: IntArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray

    def __len__(self) -> int:
        return len(self.time)

    @classmethod
    def from_columns(cls, time: Any, open: Any, high: Any, low: Any, close: Any, volume: Any) -> Bars:
        as_float = lambda values: np.ascontiguousarray(values, dtype=np.float64)  # noqa: E731
        return cls(np.ascontiguousarray(time, dtype=np.int64), *map(as_float, (open, high, low, close, volume)))

    @classmethod
    def from_rows(cls, rows: Sequence[Sequence[Any]] | Iterable[Sequence[Any]]) -> Bars:
        """From (time_seconds, open, high, low, close, volume) tuples."""
        array = np.array(list(rows), dtype=np.float64).reshape(-1, 6)
        return cls.from_columns(array[:, 0].astype(np.int64), *array[:, 1:].T)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, time_column: str = "date") -> Bars:
        """From a DataFrame with OHLCV columns and a datetime (or epoch seconds) column or index."""
        times = frame.get(time_column, frame.index)
        seconds: Any = (
            pd.DatetimeIndex(times).as_unit("s").asi8
            if pd.api.types.is_datetime64_any_dtype(times)
            else np.asarray(times, dtype=np.int64)
        )
        return cls.from_columns(seconds, *(frame[column].to_numpy() for column in COLUMNS))

    def to_frame(self) -> pd.DataFrame:
        index = pd.DatetimeIndex(pd.to_datetime(self.time, unit="s", utc=True), name="time")
        return pd.DataFrame({column: getattr(self, column) for column in COLUMNS}, index=index)

    def slice(self, start: int, stop: int | None = None) -> Bars:
        part = slice(start, stop)
        return Bars(*(getattr(self, name)[part] for name in ("time", *COLUMNS)))

    def source(self, name: str) -> FloatArray:
        """A price column or a TA-Lib-style combination: hl2, hlc3 (typical price), ohlc4."""
        if name == "hl2":
            return (self.high + self.low) / 2.0
        if name == "hlc3":
            return (self.high + self.low + self.close) / 3.0
        if name == "ohlc4":
            return (self.open + self.high + self.low + self.close) / 4.0
        column: FloatArray = getattr(self, name)
        return column


def nullable(values: FloatArray) -> list[float | None]:
    """JSON numbers, null where there is no value (warm-up, an undefined ratio, an infinity)."""
    as_objects = values.astype(object)
    as_objects[~np.isfinite(values)] = None
    result: list[float | None] = as_objects.tolist()
    return result


def anchor_periods(time: IntArray, anchor: str, sessions: SessionTable | None = None) -> IntArray:
    """A number per bar that changes exactly when a new anchor period starts.

    day: the UTC day; week: the UTC week starting Monday; session: the exchange's trading session,
    from its calendar (`sessions.SessionTable.periods`; the UTC day without one).
    """
    if anchor == "day":
        return time // DAY
    if anchor == "week":
        return (time // DAY + 3) // 7  # 1970-01-01 was a Thursday: +3 puts Mondays on the boundary
    if anchor == "session":
        return time // DAY if sessions is None else sessions.periods(time)
    raise ValueError(f"unknown anchor {anchor!r}")

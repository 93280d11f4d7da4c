"""The trading sessions of a stock's exchange as arrays, for session flags and session VWAP.

Pure: no Django, no calendar library, no clock. The table is built at the edge from a maintained
exchange calendar (`market.sessions.session_bounds`, exchange-calendars: holidays, early closes, DST)
and passed in through `compute.Context`; everything here is a lookup of bar times in its arrays.

Extended hours follow the US venues: pre-market from 04:00 New York time (5h30 before the 09:30
open) and after-hours for 4 hours after the close (16:00 to 20:00, 13:00 to 17:00 on early-close days).
A holiday has no session, so no pre-market, regular or after-hours bar either.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from indicators.series import IntArray

PRE_MARKET_SECONDS = 5 * 3600 + 1800
POST_MARKET_SECONDS = 4 * 3600
BoolArray = NDArray[np.bool_]


@dataclass(frozen=True, eq=False, slots=True)
class SessionTable:
    """Sessions of one calendar, oldest first, in UTC epoch seconds: the regular `open` and `close`, and
    the extended hours around them (`pre_open`, `post_close`), kept so that a live bar's lookup is one
    binary search."""

    calendar: str
    open: IntArray
    close: IntArray
    pre_open: IntArray
    post_close: IntArray

    @classmethod
    def from_bounds(cls, calendar: str, opens: object, closes: object) -> SessionTable:
        open_, close = np.asarray(opens, dtype=np.int64), np.asarray(closes, dtype=np.int64)
        return cls(calendar, open_, close, open_ - PRE_MARKET_SECONDS, close + POST_MARKET_SECONDS)

    def latest_started(self, time: IntArray) -> IntArray:
        """Per bar time, the index of the latest session whose pre-market has begun (-1: none yet)."""
        return np.searchsorted(self.pre_open, time, side="right") - 1

    def _within(self, time: IntArray, starts: IntArray, ends: IntArray) -> BoolArray:
        index = self.latest_started(time)
        known = index >= 0
        safe = np.where(known, index, 0)
        inside: BoolArray = known & (time >= starts[safe]) & (time < ends[safe])
        return inside

    def regular(self, time: IntArray) -> BoolArray:
        """Bars that open during a regular session (09:30 to 16:00, or to 13:00 on early closes)."""
        return self._within(time, self.open, self.close)

    def pre_market(self, time: IntArray) -> BoolArray:
        return self._within(time, self.pre_open, self.open)

    def post_market(self, time: IntArray) -> BoolArray:
        return self._within(time, self.close, self.post_close)

    def periods(self, time: IntArray) -> IntArray:
        """Session VWAP's anchor periods: a bar belongs to the latest session whose pre-market has begun
        at its open. Bars outside every session (overnight, weekends, holidays) continue the last one:
        the anchor restarts only when a session begins, never on a day the exchange is closed."""
        return self.latest_started(time)

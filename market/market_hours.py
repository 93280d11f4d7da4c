"""When an exchange is open, from a maintained calendar (exchange-calendars: holidays, early closes).

Pure: `now` is always passed in. A collector for stocks asks `state(now)` and idles until
`next_open` when the session is over; crypto sources have no calendar and never idle.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache

import exchange_calendars
import pandas as pd


@dataclass(frozen=True, slots=True)
class SessionState:
    open: bool
    #: When the state changes next: the session's close while open, the next open while closed.
    next_change: datetime


@cache
def _calendar(name: str) -> exchange_calendars.ExchangeCalendar:
    # Building a calendar takes most of a second; one per process and name is enough.
    return exchange_calendars.get_calendar(name)


@dataclass(frozen=True, slots=True)
class MarketHours:
    calendar: str  # an exchange-calendars name: XNYS, XNAS, XLON, 24/5, 24/7...

    def state(self, now: datetime) -> SessionState:
        calendar = _calendar(self.calendar)
        minute = pd.Timestamp(now).tz_convert("UTC").floor("min")
        if calendar.is_open_on_minute(minute):
            return SessionState(True, calendar.next_close(minute).to_pydatetime())
        return SessionState(False, calendar.next_open(minute).to_pydatetime())

    def is_open(self, now: datetime) -> bool:
        return self.state(now).open


def validate_calendar(name: str) -> str:
    """The name if exchange-calendars knows it; a ValueError naming a few it knows otherwise."""
    if name not in exchange_calendars.get_calendar_names():
        raise ValueError(f"unknown exchange calendar {name!r}; e.g. XNYS, XNAS, XLON, 24/5, 24/7")
    return name

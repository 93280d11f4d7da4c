"""Trading sessions of exchange-traded instruments (stocks, indices). Pure: no Django, no clock.

Crypto trades around the clock, so its days are plain UTC days. An exchange-traded instrument trades
in sessions: NYSE from 09:30 to 16:00 New York time, 13:00 on early-close days, never on holidays.
The calendars come from `exchange-calendars` (XNYS, XNAS, XLON, ...).

Our convention for the daily bar of such an instrument (see docs/scheduled.md): it covers the
regular session only (pre- and post-market 1m bars count in the intraday timeframes, not in the
day), and it is labelled with the session date at 00:00 UTC, like every other daily bar. So a
chart shows one bar per trading date, and the bar is final once the session has closed.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache

import exchange_calendars
import pandas as pd

# Calendars are built once per process for this whole range (building one takes about half a second).
CALENDAR_START = "1990-01-01"
CALENDAR_END = "2035-12-31"


@dataclass(frozen=True, slots=True)
class Session:
    """One trading session: bars from `open` (inclusive) to `close` (exclusive), both UTC.

    `breaks` are the (start, end) spans inside the session when the market pauses (lunch breaks on
    some Asian exchanges); there are none on US exchanges.
    """

    day: date
    open: datetime
    close: datetime
    breaks: tuple[tuple[datetime, datetime], ...] = ()

    @property
    def label(self) -> datetime:
        """The open time of this session's daily bar: the session date at 00:00 UTC."""
        return datetime.combine(self.day, time(), tzinfo=UTC)


@lru_cache(maxsize=8)
def _calendar(name: str) -> exchange_calendars.ExchangeCalendar:
    with warnings.catch_warnings():
        # exchange-calendars 4.13 trips a pandas 3.1 deprecation warning while it builds a calendar.
        warnings.simplefilter("ignore")
        return exchange_calendars.get_calendar(name, start=CALENDAR_START, end=CALENDAR_END)


def known_calendar(name: str) -> bool:
    return name in exchange_calendars.get_calendar_names()


def sessions_between(calendar: str, start: datetime, end: datetime) -> list[Session]:
    """Sessions of `calendar` that overlap [start, end), oldest first."""
    schedule = _calendar(calendar).schedule
    # A session can start the day before its date in UTC (Asia): look one day either side.
    first = pd.Timestamp(start.astimezone(UTC).date() - timedelta(days=1))
    last = pd.Timestamp(end.astimezone(UTC).date() + timedelta(days=1))
    rows = schedule.loc[first:last]
    sessions = []
    for day, row in rows.iterrows():
        session = _session(day, row)
        if session.open < end and session.close > start:
            sessions.append(session)
    return sessions


def session_on(calendar: str, day: date) -> Session | None:
    """The session of `day`, or None if the exchange does not trade that day."""
    schedule = _calendar(calendar).schedule
    key = pd.Timestamp(day)
    if key not in schedule.index:
        return None
    return _session(key, schedule.loc[key])


def _session(day: pd.Timestamp, row: pd.Series) -> Session:
    breaks: tuple[tuple[datetime, datetime], ...] = ()
    if pd.notna(row["break_start"]) and pd.notna(row["break_end"]):
        breaks = ((row["break_start"].to_pydatetime(), row["break_end"].to_pydatetime()),)
    return Session(day.date(), row["open"].to_pydatetime(), row["close"].to_pydatetime(), breaks)


def session_bounds(calendar: str) -> tuple[list[int], list[int]]:
    """Every session's regular open and close, UTC epoch seconds, oldest first (CALENDAR_START to
    CALENDAR_END): holidays are absent, early closes close early, DST is in the UTC times."""
    schedule = _calendar(calendar).schedule
    opens = pd.DatetimeIndex(schedule["open"]).as_unit("s").asi8
    closes = pd.DatetimeIndex(schedule["close"]).as_unit("s").asi8
    return opens.tolist(), closes.tolist()

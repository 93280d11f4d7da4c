"""Which backups to keep: the newest, and the newest of each of the last N days, ISO weeks and
months that have a backup. This is the rule of restic's and borg's `--keep-daily/--keep-weekly/
--keep-monthly`: a period without a backup (the machine was off) does not use up a place, so a
gap never costs the older backups. Pure: no Django, no files.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from datetime import datetime

PERIODS = ("daily", "weekly", "monthly")


@dataclass(frozen=True, slots=True)
class KeepPolicy:
    daily: int = 7
    weekly: int = 4
    monthly: int = 12

    @classmethod
    def parse(cls, text: str) -> KeepPolicy:
        """`daily=7,weekly=4,monthly=12`; a period left out keeps none of its own."""
        counts = dict.fromkeys(PERIODS, 0)
        for item in filter(None, (part.strip() for part in text.split(","))):
            period, _, count = (piece.strip() for piece in item.partition("="))
            if period not in counts or not count.isdigit():
                raise ValueError(f"{item!r}: expected period=count with period one of {', '.join(PERIODS)}")
            counts[period] = int(count)
        return cls(**counts)


def backups_to_keep(times: Iterable[datetime], policy: KeepPolicy) -> set[datetime]:
    """The times, among `times` (UTC), of the backups the policy keeps."""
    newest_first = sorted(set(times), reverse=True)
    keep = set(newest_first[:1])
    for count, period in ((policy.daily, _day), (policy.weekly, _iso_week), (policy.monthly, _month)):
        keep.update(_newest_of_each_period(newest_first, period, count))
    return keep


def _newest_of_each_period(
    newest_first: list[datetime], period: Callable[[datetime], Hashable], count: int
) -> list[datetime]:
    kept: list[datetime] = []
    periods: set[Hashable] = set()
    for moment in newest_first:
        if len(periods) == count:
            break
        if period(moment) not in periods:
            periods.add(period(moment))
            kept.append(moment)
    return kept


def _day(moment: datetime) -> Hashable:
    return moment.date()


def _iso_week(moment: datetime) -> Hashable:
    year, week, _ = moment.isocalendar()
    return year, week


def _month(moment: datetime) -> Hashable:
    return moment.year, moment.month

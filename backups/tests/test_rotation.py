"""The keep policy: the newest backup of each of the last N days, weeks and months that have one."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from backups.rotation import KeepPolicy, backups_to_keep


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def kept(times: list[str], **counts: int) -> list[str]:
    policy = KeepPolicy(**{"daily": 0, "weekly": 0, "monthly": 0, **counts})
    return sorted(moment.isoformat(timespec="minutes")[:16] for moment in backups_to_keep(map(at, times), policy))


def test_daily_keeps_the_newest_backup_of_each_of_the_last_days():
    times = ["2026-11-01 01:00", "2026-11-01 13:00", "2026-11-02 01:00", "2026-11-02 13:00", "2026-11-03 01:00"]

    assert kept(times, daily=2) == ["2026-11-02T13:00", "2026-11-03T01:00"]


def test_days_without_a_backup_do_not_use_up_places():
    # The machine was off for a week: the three days that have backups are the last three
    assert kept(["2026-11-01 02:41", "2026-11-02 02:41", "2026-11-10 02:41"], daily=3) == [
        "2026-11-01T02:41",
        "2026-11-02T02:41",
        "2026-11-10T02:41",
    ]


def test_weekly_goes_by_iso_weeks_which_start_on_monday():
    # Mon 16th and Sun 22nd are ISO week 47, Mon 23rd week 48
    times = ["2026-11-16 02:41", "2026-11-22 02:41", "2026-11-23 02:41"]

    assert kept(times, weekly=2) == ["2026-11-22T02:41", "2026-11-23T02:41"]


def test_monthly_crosses_the_year():
    times = ["2025-11-30 02:41", "2025-12-05 02:41", "2025-12-31 02:41", "2026-01-15 02:41"]

    assert kept(times, monthly=2) == ["2025-12-31T02:41", "2026-01-15T02:41"]


def test_the_periods_add_up_and_the_newest_is_always_kept():
    daily_for_ninety_days = [f"2026-{month:02d}-{day:02d} 02:41" for month in (8, 9, 10) for day in range(1, 31)]

    result = kept(daily_for_ninety_days, daily=3, weekly=2, monthly=3)

    # 3 days (Oct 28-30), the newest of ISO weeks 44 (Oct 30, already kept) and 43 (Oct 25),
    # and the newest of October (Oct 30), September (Sep 30) and August (Aug 30)
    assert result == [
        "2026-08-30T02:41",
        "2026-09-30T02:41",
        "2026-10-25T02:41",
        "2026-10-28T02:41",
        "2026-10-29T02:41",
        "2026-10-30T02:41",
    ]
    assert kept(daily_for_ninety_days) == ["2026-10-30T02:41"]
    assert kept([]) == []


def test_the_policy_reads_from_its_setting():
    assert KeepPolicy.parse("daily=7,weekly=4,monthly=12") == KeepPolicy(7, 4, 12)
    assert KeepPolicy.parse(" daily = 3 ") == KeepPolicy(3, 0, 0)


@pytest.mark.parametrize("text", ["hourly=3", "daily=x", "daily=-1", "daily"])
def test_a_bad_policy_is_refused_with_what_was_expected(text):
    with pytest.raises(ValueError, match="expected period=count with period one of daily, weekly, monthly"):
        KeepPolicy.parse(text)

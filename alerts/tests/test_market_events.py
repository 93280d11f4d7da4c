"""Event rules fed by the market app: the data-quality checker's reports fire data-quality rules, and
collectors' health rows (`CollectorStatus`) fire collector-down rules, once per outage, through the
same firings, deliveries and notifications as every other rule."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from django.core import mail

from alerts import services
from alerts.events import ReportFinding, ReportIssue, collector_down_reason, report_issue
from alerts.models import AlertRule, DeliveryStatus, Notification
from alerts.rules import Condition, RuleSpec, describe, rule_errors
from alerts.tests.conftest import btc_frame, store_frame, utc
from market.barstore import BarRow
from market.models import CollectorStatus
from market.quality_reports import check_quality
from market.services import store_bars

DAY = date(2017, 11, 6)
# The real bars of 2017-11-06 (to 06:13) miss 9 bars in 8 runs: 00:09, 00:13, 00:44, 00:48,
# 01:15-01:16, 02:25, 04:57 and 06:03. Checked at 06:10, 9 of the 370 bars expected are missing:
# 9/370 x 100 = 2.4 points off, score 97.
CHECKED_AT = utc("2017-11-06 06:10")


def quality_rule(make_rule, **fields) -> AlertRule:
    return make_rule(condition=Condition.DATA_QUALITY, channels=["in_app", "email"], **fields)


@pytest.fixture
def day_with_gaps(btc):
    frame = btc_frame(1600)
    store_frame(btc, frame[frame["date"] >= utc("2017-11-06 00:00")])


@pytest.mark.django_db
def test_the_quality_checker_on_a_real_day_with_gaps_fires_the_matching_rules_once(
    day_with_gaps, make_rule, django_capture_on_commit_callbacks
):
    # Given rules on a score below 99, on gaps, on OHLC errors, below 90, and on any problem
    below_99 = quality_rule(make_rule, level=99)
    on_gaps = quality_rule(make_rule, finding_kinds=["gap"])
    quality_rule(make_rule, finding_kinds=["ohlc", "stale"])
    quality_rule(make_rule, level=90)
    any_problem = quality_rule(make_rule)

    # When the hourly quality check scores the day, twice (the second run changes nothing)
    with django_capture_on_commit_callbacks(execute=True):
        assert str(check_quality(DAY, CHECKED_AT)) == "1 report(s), 1 changed, 1 below 100"
    with django_capture_on_commit_callbacks(execute=True):
        assert str(check_quality(DAY, CHECKED_AT)) == "1 report(s), 0 changed, 1 below 100"

    # Then each matching rule fired once, keyed by the newest gap (the bar missing at 06:03)
    fired = {rule.pk: list(rule.firings.values_list("bar_time", "value")) for rule in AlertRule.objects.all()}
    assert fired == {
        below_99.pk: [(utc("2017-11-06 06:03"), 97.0)],
        on_gaps.pk: [(utc("2017-11-06 06:03"), 97.0)],
        any_problem.pk: [(utc("2017-11-06 06:03"), 97.0)],
        **{rule.pk: [] for rule in AlertRule.objects.exclude(pk__in=[below_99.pk, on_gaps.pk, any_problem.pk])},
    }
    firing = below_99.firings.get()
    assert firing.message == (
        "UNITTEST/BTC (binance, 1m): data quality score below 99 at 2017-11-06T06:03:00Z"
        " (quality score 97 for 2017-11-06: gap x8 (9 bars))"
    )
    # ... through the same deliveries as every rule: in-app (with a notification) and email
    assert sorted(firing.deliveries.values_list("channel", "status")) == [
        ("email", DeliveryStatus.SENT),
        ("in_app", DeliveryStatus.SENT),
    ]
    assert Notification.objects.filter(firing=firing).exists()
    assert len(mail.outbox) == 3


@pytest.mark.django_db
def test_a_new_gap_later_in_the_day_fires_again(btc, make_rule):
    rule = quality_rule(make_rule, finding_kinds=["gap"])
    frame = btc_frame(1600)
    day = frame[frame["date"] >= utc("2017-11-06 00:00")]
    # At 05:00 the bars to 04:54 are in: the newest gap is the bar missing at 02:25
    store_frame(btc, day[day["date"] < utc("2017-11-06 04:55")])
    check_quality(DAY, utc("2017-11-06 05:00"))
    # At 06:10 the rest is in, with the bars missing at 04:57 and 06:03
    store_frame(btc, day[day["date"] >= utc("2017-11-06 04:55")])
    check_quality(DAY, CHECKED_AT)

    assert list(rule.firings.order_by("bar_time").values_list("bar_time", flat=True)) == [
        utc("2017-11-06 02:25"),
        utc("2017-11-06 06:03"),
    ]


def spec(**fields) -> RuleSpec:
    return RuleSpec(id=1, instrument_id=1, timeframe="1m", condition=Condition.DATA_QUALITY, **fields)


def test_a_report_matches_a_score_threshold_finding_kinds_or_both():
    findings = [ReportFinding("gap", 100.0, 2), ReportFinding("stale", 400.0, 6), ReportFinding("gap", None, 30)]

    def issue(score: int, found: list[ReportFinding], **rule: object) -> ReportIssue | None:
        return report_issue(score, found, day="2017-11-06", day_start=0.0, spec=spec(**rule))

    assert issue(97, findings, level=98) == ReportIssue(
        400.0, "quality score 97 for 2017-11-06: gap x2 (32 bars), stale x1 (6 bars)"
    )
    assert issue(97, findings, level=97) is None  # 97 is not below 97
    assert issue(97, findings, finding_kinds=("gap",)) == ReportIssue(
        100.0, "quality score 97 for 2017-11-06: gap x2 (32 bars)"
    )
    assert issue(97, findings, finding_kinds=("ohlc",)) is None
    assert issue(97, findings, level=90, finding_kinds=("gap",)) is None
    assert issue(100, []) is None
    # Only the summary of findings beyond the listed ones, which has no time: keyed by the day's start
    assert issue(60, [ReportFinding("gap", None, 50)]) == ReportIssue(
        0.0, "quality score 60 for 2017-11-06: gap x1 (50 bars)"
    )


def test_data_quality_rules_validate_their_score_and_finding_kinds():
    assert rule_errors("data_quality", level=101) == {"level": "the quality score to stay above must be from 1 to 100"}
    assert "unknown finding kind holes" in rule_errors("data_quality", finding_kinds=["gap", "holes"])["finding_kinds"]
    assert rule_errors("data_quality", finding_kinds="gap")["finding_kinds"] == 'must be a list like ["gap", "stale"]'
    assert rule_errors("crossing_up", level=1, finding_kinds=["gap"]) == {"finding_kinds": "not used by crossing_up"}
    assert rule_errors("data_quality", level=95, finding_kinds=["gap", "stale"]) == {}
    assert describe(spec(level=95, finding_kinds=("gap", "stale"))) == "data quality score below 95 with gap or stale"


def test_the_finding_kinds_rules_accept_are_those_the_checker_reports():
    from alerts.rules import QUALITY_FINDING_KINDS
    from market.models import FindingKind

    assert sorted(QUALITY_FINDING_KINDS) == sorted(FindingKind.values)


# --- Collector down ------------------------------------------------------------------------------

LAST_BAR = utc("2017-11-06 06:13")  # the newest of the 1,600 real bars


def report_health(name: str, state: str, at: datetime, instruments: list[int]) -> None:
    """What a collector's health report writes (market.collector_health.save_health)."""
    CollectorStatus.objects.update_or_create(
        name=name,
        defaults={
            "source": "binance",
            "state": state,
            "started_at": utc("2017-11-06 00:00"),
            "updated_at": at,
            "counters": {"instruments": instruments},
        },
    )


def test_a_collector_is_down_when_stopped_its_breaker_open_or_silent():
    assert collector_down_reason("streaming", 100.0, 130.0, stale_seconds=60) is None
    assert collector_down_reason("streaming", 100.0, 161.0, stale_seconds=60) == "it has not reported for 61 s"
    assert collector_down_reason("breaker-open", 100.0, 101.0, stale_seconds=60) == (
        "its circuit breaker is open (the source keeps failing)"
    )
    assert collector_down_reason("stopped", 100.0, 9999.0, stale_seconds=60) == "it was stopped"
    assert collector_down_reason("backoff", 100.0, 101.0, stale_seconds=60) is None  # reconnecting


@pytest.mark.django_db
def test_a_collector_that_goes_down_fires_exactly_once_per_outage(btc, make_rule, settings):
    settings.COLLECTOR_STALE_SECONDS = 60
    store_frame(btc, btc_frame(1600))  # to 06:13
    rule = make_rule(condition=Condition.COLLECTOR_DOWN, bars=60)  # an hour of silence on its own
    report_health("binance", "streaming", utc("2017-11-06 06:14"), [btc.pk])
    assert services.check_collectors(now=utc("2017-11-06 06:14:30")) == []

    # When the collector stops reporting (it died), checked every minute for an hour and a half
    checks = [utc("2017-11-06 06:14") + timedelta(minutes=m) for m in range(1, 90)]
    fired = [firing for moment in checks for firing in services.check_collectors(now=moment)]

    # Then exactly one firing, at the first check after it went stale, keyed by the newest bar, even
    # when the feed's hour of silence is noticed too
    [firing] = fired
    assert (firing.rule, firing.bar_time, firing.fired_at) == (rule, LAST_BAR, utc("2017-11-06 06:16"))
    assert "collector binance is down: it has not reported for 120 s" in firing.message

    # When bars flow again and the collector then opens its circuit breaker: a new outage, one firing
    store_bars([BarRow(btc.pk, "1m", utc("2017-11-06 07:40"), 1e-3, 1e-3, 1e-3, 1e-3, 1.0, None, None, True)])
    report_health("binance", "streaming", utc("2017-11-06 07:41"), [btc.pk])
    assert services.check_collectors(now=utc("2017-11-06 07:41:30")) == []
    report_health("binance", "breaker-open", utc("2017-11-06 07:42"), [btc.pk])
    [again] = services.check_collectors(now=utc("2017-11-06 07:42:10"))
    assert services.check_collectors(now=utc("2017-11-06 07:42:40")) == []
    assert again.bar_time == utc("2017-11-06 07:40")
    assert "circuit breaker is open" in again.message


@pytest.mark.django_db
def test_an_instrument_another_collector_still_covers_is_not_down(btc, make_rule, settings):
    settings.COLLECTOR_STALE_SECONDS = 60
    store_frame(btc, btc_frame(1600))
    make_rule(condition=Condition.COLLECTOR_DOWN, bars=60)
    now = utc("2017-11-06 06:15")
    report_health("binance-old", "streaming", utc("2017-11-06 05:00"), [btc.pk])  # retired, row left behind
    report_health("binance", "streaming", utc("2017-11-06 06:14:50"), [btc.pk])
    report_health("yahoo", "breaker-open", utc("2017-11-06 06:14:50"), [btc.pk + 1])  # another instrument

    assert services.check_collectors(now=now) == []

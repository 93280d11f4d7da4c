"""Rules judged on stored real bars through the services: the bar-close hook, replays, firing options,
intrabar rules and event rules."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction

from alerts import services
from alerts.models import AlertFiring, AlertRule, Delivery, DeliveryStatus, Notification
from alerts.rules import Condition
from alerts.tests.conftest import btc_frame, minutes, store_frame, utc
from market.barstore import BarRow
from market.services import store_bars

pytestmark = pytest.mark.django_db

NOW = utc("2017-11-06 12:00")


def fired_minutes(rule: AlertRule) -> list[str]:
    times = rule.firings.order_by("bar_time").values_list("bar_time", flat=True)
    return [t.strftime("%Y-%m-%d %H:%M") for t in times]


def close_each_bar(instrument, frame, *, now=NOW) -> None:
    """Judge the rules on every bar of `frame` in turn, as if each had just closed."""
    for moment in frame["date"]:
        services.evaluate_bar_close(instrument.pk, "1m", moment.to_pydatetime(), now=now)


@pytest.fixture
def history(btc):
    """The first 1,600 real bars (to 2017-11-06 06:08), stored."""
    frame = btc_frame(1600)
    store_frame(btc, frame)
    return frame


def test_a_final_bar_stored_and_published_fires_its_rules_through_the_hook(
    btc, make_rule, django_capture_on_commit_callbacks
):
    # Given the bars up to 04:31 stored as history, and a rule on the 0.0019 level
    frame = btc_frame(1600)
    store_frame(btc, frame[frame["date"] < utc("2017-11-06 04:32")])
    rule = make_rule(condition=Condition.CROSSING_UP, level=0.0019, channels=["in_app"], name="0.0019")

    # When the collector stores the 04:32 bar (close 0.00190091) and publishes it after commit
    with django_capture_on_commit_callbacks(execute=True):
        store_frame(btc, frame[frame["date"] == utc("2017-11-06 04:32")], publish=True)

    # Then the rule fired once, on that bar, with its in-app delivery sent and a notification stored
    firing = AlertFiring.objects.get(rule=rule)
    assert firing.bar_time == utc("2017-11-06 04:32")
    assert firing.close == pytest.approx(0.00190091)
    assert firing.message.startswith("UNITTEST/BTC (binance, 1m): close crossing up 0.0019 at 2017-11-06T04:32:00Z")
    assert list(firing.deliveries.values_list("channel", "status")) == [("in_app", DeliveryStatus.SENT)]
    assert Notification.objects.get(firing=firing).user == rule.owner
    rule.refresh_from_db()
    assert (rule.fire_count, rule.last_fired_bar_time) == (1, utc("2017-11-06 04:32"))


def test_a_batch_of_history_judges_only_its_newest_bar(btc, make_rule, django_capture_on_commit_callbacks):
    make_rule(condition=Condition.LESS_THAN, level=0.0016)  # true on hundreds of these bars
    with django_capture_on_commit_callbacks(execute=True):
        store_frame(btc, btc_frame(200), publish=True)
    assert minutes([int(t.timestamp()) for t in AlertFiring.objects.values_list("bar_time", flat=True)]) == [
        "2017-11-05 04:41"
    ]


def test_replaying_the_same_bars_never_fires_twice(btc, history, make_rule, django_capture_on_commit_callbacks):
    rule = make_rule(condition=Condition.CROSSING, level=0.0019)
    window = history[(history["date"] >= utc("2017-11-06 03:30")) & (history["date"] <= utc("2017-11-06 05:00"))]

    with django_capture_on_commit_callbacks(execute=True):
        close_each_bar(btc, window)
        first = fired_minutes(rule)
        close_each_bar(btc, window)  # the collector restarts and re-processes the same bars
        store_frame(btc, window, publish=True)  # ... and stores and publishes them again

    assert first == ["2017-11-06 03:41", "2017-11-06 04:32", "2017-11-06 04:33", "2017-11-06 04:36", "2017-11-06 04:37"]
    assert fired_minutes(rule) == first
    assert Delivery.objects.count() == Notification.objects.count() == len(first)


def test_the_database_refuses_a_second_firing_for_the_same_rule_and_bar(make_rule):
    rule = make_rule(condition=Condition.GREATER_THAN, level=1)
    AlertFiring.objects.create(rule=rule, bar_time=utc("2017-11-06 04:32"), message="x", payload={})
    with pytest.raises(IntegrityError), transaction.atomic():
        AlertFiring.objects.create(rule=rule, bar_time=utc("2017-11-06 04:32"), message="y", payload={})
    # A stale evaluation (a second worker on the same bar) is absorbed, not recorded twice.
    candidate = services.Candidate(rule, utc("2017-11-06 04:32"), 1.0)
    assert services.record_firings([candidate]) == []


def test_cooldown_keeps_firings_apart_by_at_least_that_much_bar_time(btc, history, make_rule):
    # The close stays under 0.0016 on most bars from 23:25 on 2017-11-04.
    rule = make_rule(condition=Condition.LESS_THAN, level=0.0016, cooldown_seconds=600)
    window = history.head(120)

    close_each_bar(btc, window)

    expected, last = [], None
    for moment, close in zip(window["date"], window["close"], strict=True):
        if close < 0.0016 and (last is None or moment - last >= timedelta(seconds=600)):
            expected.append(moment.strftime("%Y-%m-%d %H:%M"))
            last = moment
    assert fired_minutes(rule) == expected
    # 10 minutes after 23:25 falls in a gap (no bars 23:33 to 23:37); 23:38 closed at 0.00159965.
    assert expected[:3] == ["2017-11-04 23:25", "2017-11-04 23:38", "2017-11-04 23:48"]


def test_an_expired_rule_does_not_fire(btc, history, make_rule):
    rule = make_rule(condition=Condition.LESS_THAN, level=0.0016, expires_at=utc("2017-11-06 12:00"))
    bar = utc("2017-11-04 23:25")  # closed at 0.00159984

    assert services.evaluate_bar_close(btc.pk, "1m", bar, now=utc("2017-11-06 12:00")) == []
    assert len(services.evaluate_bar_close(btc.pk, "1m", bar, now=utc("2017-11-06 11:59"))) == 1
    assert rule.firings.count() == 1


def test_a_paused_rule_does_nothing(btc, history, make_rule, django_capture_on_commit_callbacks):
    rule = make_rule(condition=Condition.LESS_THAN, level=0.0016, active=False)
    with django_capture_on_commit_callbacks(execute=True):
        close_each_bar(btc, history.head(60))
        store_frame(btc, history.head(60), publish=True)
    assert rule.firings.count() == 0


def test_a_once_rule_fires_the_first_time_and_then_deactivates(btc, history, make_rule):
    rule = make_rule(condition=Condition.LESS_THAN, level=0.0016, frequency="once")
    close_each_bar(btc, history.head(60))
    rule.refresh_from_db()
    assert fired_minutes(rule) == ["2017-11-04 23:25"]
    assert rule.active is False


def test_intrabar_rules_fire_on_the_partial_bar_once_and_not_again_at_its_close(btc, history, make_rule):
    # Given bars to 04:31 (close 0.00189982); the 04:32 bar is still being built
    per_bar = make_rule(condition=Condition.CROSSING_UP, level=0.0019, frequency="once_per_bar")
    at_close = make_rule(condition=Condition.CROSSING_UP, level=0.0019, frequency="once_per_bar_close")
    bar_time = utc("2017-11-06 04:32")

    def partial(close: float) -> list[AlertFiring]:
        return services.evaluate_partial_bar(
            btc.pk, "1m", bar_time, open=0.0019, high=close, low=0.0019, close=close, volume=1.0, now=NOW
        )

    # When a trade lifts the partial bar above the level, twice within the bar
    assert partial(0.001899) == []
    [firing] = partial(0.0019005)
    assert partial(0.001901) == []

    # Then the intrabar rule fired once, on the partial bar; the close-only rule waits for the close
    assert (firing.rule, firing.intrabar, firing.close) == (per_bar, True, 0.0019005)
    assert services.evaluate_bar_close(btc.pk, "1m", bar_time, now=NOW)[0].rule == at_close
    assert per_bar.firings.count() == at_close.firings.count() == 1


def test_a_gap_before_a_closed_bar_fires_data_quality_rules(btc, history, make_rule):
    rule = make_rule(condition=Condition.DATA_QUALITY)
    close_each_bar(btc, history.head(10))  # bars 23:02 to 23:07, then 23:14 after six missing minutes
    [firing] = rule.firings.all()
    assert firing.bar_time == utc("2017-11-04 23:14")
    assert firing.value == 6
    assert firing.message.endswith("(6 missing bars before this one)")


def test_a_silent_collector_fires_once_per_outage(btc, history, make_rule):
    rule = make_rule(condition=Condition.COLLECTOR_DOWN, bars=5)
    last = history["date"].iloc[-1].to_pydatetime()  # 2017-11-06 06:08 (closed 06:09)

    assert services.check_collectors(now=last + timedelta(minutes=6)) == []
    [firing] = services.check_collectors(now=last + timedelta(minutes=6, seconds=1))
    assert services.check_collectors(now=last + timedelta(minutes=30)) == []
    assert firing.bar_time == last

    # Bars arrive again, then stop again: a new outage, a new firing
    row = BarRow(btc.pk, "1m", last + timedelta(minutes=40), 0.0019, 0.0019, 0.0019, 0.0019, 1.0, None, None, True)
    store_bars([row], publish=False)
    assert len(services.check_collectors(now=last + timedelta(minutes=50))) == 1
    assert rule.firings.count() == 2


def test_an_event_reported_elsewhere_fires_the_matching_event_rules(btc, make_rule):
    rule = make_rule(condition=Condition.DATA_QUALITY)
    bar = utc("2017-11-06 04:32")
    firings = services.record_market_event(Condition.DATA_QUALITY, btc.pk, "1m", bar, detail="volume is zero", now=NOW)
    assert [f.rule for f in firings] == [rule]
    assert services.record_market_event(Condition.DATA_QUALITY, btc.pk, "1m", bar, detail="again", now=NOW) == []


def test_the_tasks_take_ids_and_iso_times(btc, history, make_rule):
    from alerts.tasks import evaluate_bar_close_task, evaluate_partial_bar_task

    make_rule(condition=Condition.CROSSING_UP, level=0.0019, frequency="once_per_bar")
    ohlcv = (0.0019, 0.0019005, 0.0019, 0.0019005, 1.0)
    assert evaluate_partial_bar_task.delay(btc.pk, "1m", "2017-11-06T04:32:00+00:00", ohlcv).get() == 1
    assert evaluate_bar_close_task.delay(btc.pk, "1m", "2017-11-06T04:32:00+00:00").get() == 0


def test_a_stock_vwap_rule_sees_the_session_vwap_the_chart_shows(btc, make_rule):
    # Given a stock's after-hours bars either side of midnight UTC (18:30-19:29 New York time, one
    # session): a UTC-day VWAP would restart at 00:00, the session VWAP runs on from 23:30.
    btc.asset_class = "stock"
    btc.save()
    start = utc("2024-03-05 23:30")
    closes = [100.0 + (n % 7) for n in range(60)]
    rows = [
        BarRow(btc.pk, "1m", start + timedelta(minutes=n), c, c + 1, c - 1, c, 10.0, None, None, True)
        for n, c in enumerate(closes)
    ]
    store_bars(rows, publish=False)
    rule = make_rule(condition=Condition.GREATER_THAN, level=0, source={"indicator": "vwap"})

    services.evaluate_bar_close(btc.pk, "1m", rows[-1].time, now=NOW)

    # Then the firing's value is the VWAP of all 60 bars (typical price = close here, equal volumes)
    [firing] = AlertFiring.objects.filter(rule=rule)
    assert firing.value == pytest.approx(sum(closes) / len(closes), rel=1e-12)


def test_a_rolled_up_bar_that_nobody_watches_still_fires_its_rules(btc, make_rule, django_capture_on_commit_callbacks):
    # Given an hourly rule, and the 1m bars up to 2017-11-05 00:59 stored; no client watches any feed
    from market.rollup import roll_up

    rule = make_rule(timeframe="1h", condition=Condition.GREATER_THAN, level=0.0001)
    frame = btc_frame(200)
    store_frame(btc, frame[frame["date"] < utc("2017-11-05 01:00")])

    # When the roll-up runs just after 01:00 and publishes after its commit
    with django_capture_on_commit_callbacks(execute=True):
        roll_up(utc("2017-11-05 01:00") + timedelta(seconds=30))

    # Then the hour that just closed was judged: broadcasting only to listeners skips no alert rule
    assert fired_minutes(rule) == ["2017-11-05 00:00"]

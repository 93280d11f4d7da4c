"""Intrabar rules on the live path: the collector publishes partial bars, the alert rules set to fire
intrabar judge them (once per bar, with cooldown, expiry and pause), and feeds nobody watches
intrabar cost nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async

from alerts import services
from alerts.models import AlertFiring, AlertRule
from alerts.rules import Condition
from alerts.tests.conftest import FEED, btc_frame, store_frame, utc
from market.bars import MinuteBar
from market.barstore import BarRow
from market.collector import Collector
from market.sources.base import BarEvent
from market.tests.test_collector import ListSource

BAR = utc("2017-11-06 04:32")  # the real bar: open 0.0019, close 0.00190091; the 04:31 close is 0.00189982
NOW = utc("2017-11-06 12:00")


def partial_bar(close: float, *, minute=BAR) -> BarEvent:
    """The 04:32 bar (or `minute`) still running, its last trade at `close`."""
    bar = MinuteBar(int(minute.timestamp() * 1000), 0.0019, max(0.0019, close), min(0.0019, close), close, 5.0, 3, 0.0)
    return BarEvent("UNITTEST/BTC", bar, final=False)


@pytest.fixture
def scheduler(monkeypatch, settings):
    """A fresh intrabar scheduler for the collector, handing on every partial bar (no throttle)."""
    settings.ALERTS_INTRABAR_SECONDS = 0
    fresh = services.IntrabarScheduler()
    monkeypatch.setattr(services, "intrabar", fresh)
    return fresh


def rules_on_history(btc, owner) -> tuple[AlertRule, AlertRule]:
    frame = btc_frame(1600)
    store_frame(btc, frame[frame["date"] < BAR])
    common = {"owner": owner, "instrument": btc, "condition": Condition.CROSSING_UP, "level": 0.0019}
    per_bar = AlertRule.objects.create(frequency="once_per_bar", **common)
    at_close = AlertRule.objects.create(frequency="once_per_bar_close", **common)
    return per_bar, at_close


def firings_of(rule: AlertRule) -> list[tuple[object, bool, float | None]]:
    return list(AlertFiring.objects.filter(rule=rule).values_list("bar_time", "intrabar", "close"))


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_thread_connections")
async def test_partial_bars_published_by_the_collector_fire_an_intrabar_rule_once_per_bar(make_user, btc, scheduler):
    # Given real history to 04:31, a rule firing intrabar on crossing 0.0019 and one waiting for the close
    owner = await sync_to_async(make_user)()
    per_bar, at_close = await sync_to_async(rules_on_history)(btc, owner)
    collector = Collector(ListSource([]))
    collector._track("UNITTEST/BTC", btc.pk)

    # When the running 04:32 bar is published below the level, then above it, then higher still
    for close in (0.001899, 0.0019005, 0.001901):
        collector._on_bar(partial_bar(close))
        await collector.publish_partials()

    # Then the intrabar rule fired once, on the partial bar that crossed; the close-only rule did not
    assert collector.stats.partials_published == 3
    assert scheduler.handed_on == 3
    assert await sync_to_async(firings_of)(per_bar) == [(BAR, True, 0.0019005)]
    assert await sync_to_async(firings_of)(at_close) == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_thread_connections")
async def test_feeds_without_intrabar_rules_are_not_evaluated_and_rules_are_read_once_per_refresh(
    make_user, btc, scheduler
):
    owner = await sync_to_async(make_user)()
    await sync_to_async(rules_on_history)(btc, owner)
    await sync_to_async(AlertRule.objects.filter(frequency="once_per_bar").delete)()
    collector = Collector(ListSource([]))
    collector._track("UNITTEST/BTC", btc.pk)

    for close in (0.0019005, 0.001901, 0.001902):
        collector._on_bar(partial_bar(close))
        await collector.publish_partials()

    assert (scheduler.refreshes, scheduler.handed_on) == (1, 0)
    assert await sync_to_async(AlertFiring.objects.count)() == 0


async def test_a_feed_is_handed_on_at_most_once_per_interval(settings):
    # Given a scheduler whose clock we move, with one watched feed already known
    settings.ALERTS_INTRABAR_SECONDS = 1.0
    settings.ALERTS_INTRABAR_REFRESH_SECONDS = 3600
    moments = iter([0.0, 0.4, 1.0, 1.5])
    scheduler = services.IntrabarScheduler(clock=lambda: next(moments), refreshed_at=0.0)
    scheduler.feeds = frozenset({(1, "1m")})
    handed: list[BarRow] = []
    scheduler.hand_on = lambda rows: handed.extend(rows)  # type: ignore[method-assign]

    row = BarRow(FEED[0], FEED[1], BAR, 1.0, 1.0, 1.0, 1.0, 1.0, None, None, False)
    counts = [await scheduler.on_partial_bars([row]) for _ in range(4)]

    assert counts == [1, 0, 1, 0]


@pytest.mark.django_db
def test_intrabar_firings_respect_cooldown_pause_and_expiry(btc, make_rule):
    store_frame(btc, btc_frame(1600))  # to 06:08; a partial bar is judged against the bars before it
    common = {"condition": Condition.GREATER_THAN, "level": 0.0019, "frequency": "once_per_bar"}
    cooled = make_rule(cooldown_seconds=120, **common)
    make_rule(active=False, **common)
    make_rule(expires_at=NOW - timedelta(hours=1), **common)

    fired = []
    for minute in ("04:32", "04:33", "04:34"):
        moment = utc(f"2017-11-06 {minute}")
        for close in (0.00191, 0.00192):  # twice within each bar
            fired += services.evaluate_partial_bar(
                btc.pk, "1m", moment, open=0.0019, high=close, low=0.0019, close=close, volume=1.0, now=NOW
            )

    # The 04:33 firing is held back by the two-minute cooldown; paused and expired rules never fire
    assert [(f.rule, f.bar_time, f.intrabar) for f in fired] == [
        (cooled, utc("2017-11-06 04:32"), True),
        (cooled, utc("2017-11-06 04:34"), True),
    ]

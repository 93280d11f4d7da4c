"""Alerts' side effects: evaluate rules when bars close, record firings, deliver them.

The flow: `on_bars_stored` (called by `market.services.store_bars` after commit) schedules
`evaluate_bar_closes` for the feeds that have rules; that loads the newest bars, runs the pure
engine, and `record_firings` stores each firing once (the unique rule + bar time constraint makes a
replay harmless), with one `Delivery` per channel and an in-app `Notification`. After commit every
delivery becomes a Celery task (`deliver_alert_task`) that calls `alerts.delivery.attempt_delivery`,
retrying with exponential backoff; the outcome of every attempt is recorded on the delivery.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import numpy as np
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from alerts.engine import Bars, compile_rules, evaluate
from alerts.events import (
    ReportFinding,
    collector_down_reason,
    is_silent,
    judged_on_bar_close,
    may_fire,
    quality_issues,
    report_issue,
)
from alerts.messages import default_template, render_message
from alerts.models import AlertFiring, AlertRule, Channel, Delivery, Notification, new_webhook_secret
from alerts.rules import EVENTS, PRICE_FIELDS, Condition, Frequency, describe, is_intrabar
from indicators.compute import Context
from indicators.queries import instrument_context
from market.barstore import BarRow
from market.models import Bar, CollectorStatus, QualityReport
from market.timeframes import timeframe_seconds

log = logging.getLogger(__name__)

FeedKey = tuple[int, str]


@dataclass(frozen=True, slots=True)
class Candidate:
    """A rule that should fire on a bar, before it is recorded."""

    rule: AlertRule
    bar_time: datetime
    value: float | None
    close: float | None = None
    volume: float | None = None
    intrabar: bool = False
    detail: str = ""


# --- Evaluation -----------------------------------------------------------------------------------


def on_bars_stored(rows: Sequence[BarRow]) -> int:
    """After bars are committed: schedule rule evaluation for the newest final bar of every stored
    feed that has live rules. Returns how many feeds were scheduled.

    Only the newest bar of a batch is judged: a batch of history (an import, a collector catching
    up after an outage) must not fire one alert per old bar.
    """
    # Which feeds have rules first: usually none, and then no bar needs looking at again (a
    # collector catching up stores thousands a round).
    instruments = {row.instrument_id for row in rows if row.final}
    if not instruments:
        return 0
    watched = set(
        AlertRule.objects.live()
        .filter(instrument_id__in=instruments)
        .exclude(condition=Condition.COLLECTOR_DOWN)  # judged by check_collectors, not on bars
        .values_list("instrument_id", "timeframe")
    )
    if not watched:
        return 0
    newest: dict[FeedKey, datetime] = {}
    for row in rows:
        feed = (row.instrument_id, row.timeframe)
        if row.final and feed in watched and (feed not in newest or row.time > newest[feed]):
            newest[feed] = row.time
    closes = [(i, tf, t.isoformat()) for (i, tf), t in newest.items()]
    if closes:
        from alerts.tasks import evaluate_bar_closes_task

        evaluate_bar_closes_task.delay(closes)
    return len(closes)


def evaluate_bar_close(
    instrument_id: int, timeframe: str, bar_time: datetime, *, now: datetime | None = None
) -> list[AlertFiring]:
    """Judge the rules of one feed on its final bar that opened at `bar_time`."""
    return evaluate_bar_closes([(instrument_id, timeframe, bar_time)], now=now)


def evaluate_bar_closes(
    closes: Iterable[tuple[int, str, datetime]], *, now: datetime | None = None
) -> list[AlertFiring]:
    """Judge the rules of many feeds at once, each on its final bar that opened at the given time.

    A feed whose bar at that time is missing or not final is skipped.
    """
    now = now or timezone.now()
    wanted = {(instrument, timeframe): bar_time for instrument, timeframe, bar_time in closes}
    rules = list(_live_rules(wanted, now))
    if not rules:
        return []
    bar_rules = [rule for rule in rules if rule.condition not in EVENTS]
    quality_rules = [
        rule for rule in rules if rule.condition == Condition.DATA_QUALITY and judged_on_bar_close(rule.to_spec())
    ]
    book = compile_rules(rule.to_spec() for rule in bar_rules)
    feeds = {(rule.instrument_id, rule.timeframe) for rule in (*bar_rules, *quality_rules)}
    bars: dict[FeedKey, Bars] = {}
    for feed in feeds:
        loaded = _load_bars(feed, wanted[feed], count=book.lookback.get(feed, 2))
        if loaded is not None and loaded.final and int(loaded.time[-1]) == int(wanted[feed].timestamp()):
            bars[feed] = loaded
    by_id = {rule.pk: rule for rule in rules}
    last_fired = {rule.pk: _epoch(rule.last_fired_bar_time) for rule in bar_rules}
    candidates = [
        Candidate(by_id[f.rule_id], _utc(f.bar_time), f.value, f.close, f.volume, intrabar=False)
        for f in evaluate(book, bars, now=now.timestamp(), last_fired=last_fired, contexts=_contexts(bar_rules))
    ]
    candidates += _quality_candidates(quality_rules, bars, now)
    return record_firings(candidates, now=now)


def evaluate_partial_bar(
    instrument_id: int,
    timeframe: str,
    bar_time: datetime,
    *,
    open: float,
    high: float,
    low: float,
    close: float,
    volume: float,
    now: datetime | None = None,
) -> list[AlertFiring]:
    """Judge intrabar price rules (`once` / `once_per_bar` on price) on a bar still being built.

    Rules that already fired on this bar are left out before any bar is loaded: partial bars keep
    coming until the bar closes, and most of them find nothing left to judge.
    """
    now = now or timezone.now()
    feed = (instrument_id, timeframe)
    unfired = (
        _live_rules({feed: bar_time}, now)
        .exclude(frequency=Frequency.ONCE_PER_BAR_CLOSE)
        .exclude(condition__in=[*EVENTS, Condition.VOLUME_SPIKE])
        .exclude(last_fired_bar_time__gte=bar_time)
    )
    rules = [rule for rule in unfired if is_intrabar(rule.to_spec())]
    if not rules:
        return []
    book = compile_rules(rule.to_spec() for rule in rules)
    history = _load_bars(feed, bar_time, count=book.lookback[feed], before=True)
    partial_bar = Bars.from_columns([int(bar_time.timestamp())], [open], [high], [low], [close], [volume], final=False)
    bars = partial_bar if history is None else _append(history, partial_bar)
    last_fired = {rule.pk: _epoch(rule.last_fired_bar_time) for rule in rules}
    by_id = {rule.pk: rule for rule in rules}
    candidates = [
        Candidate(by_id[f.rule_id], _utc(f.bar_time), f.value, f.close, f.volume, intrabar=True)
        for f in evaluate(book, {feed: bars}, now=now.timestamp(), last_fired=last_fired, contexts=_contexts(rules))
    ]
    return record_firings(candidates, now=now)


@dataclass
class IntrabarScheduler:
    """Hands partial bars to `evaluate_partial_bar_task`, for the feeds that have intrabar rules only.

    Partial bars arrive several times a second per instrument from the collector's event loop, so
    this must cost nothing for the feeds nobody watches intrabar and never block the loop: the set
    of watched feeds is one query, refreshed at most every ALERTS_INTRABAR_REFRESH_SECONDS (a new or
    changed rule is picked up within that time), and a feed is handed on at most once every
    ALERTS_INTRABAR_SECONDS (its newest partial bar, which carries the bar's high and low so far).
    Database work and scheduling happen in a worker thread, like the final bars' (`on_bars_stored`).
    Whether a rule fires is decided by the task: once per bar, cooldown, expiry and pause hold there.
    """

    clock: Callable[[], float] = time.monotonic
    feeds: frozenset[FeedKey] = frozenset()
    refreshed_at: float = -math.inf
    refreshes: int = 0
    handed_on: int = 0
    handed_on_at: dict[FeedKey, float] = field(default_factory=dict)

    async def on_partial_bars(self, rows: Sequence[BarRow]) -> int:
        """Schedule the evaluation of those partial bars whose feed has intrabar rules; how many."""
        now = self.clock()
        if now - self.refreshed_at >= settings.ALERTS_INTRABAR_REFRESH_SECONDS:
            self.feeds = await sync_to_async(intrabar_feeds)()
            self.refreshed_at = now
            self.refreshes += 1
        due = [row for row in rows if not row.final and self._due((row.instrument_id, row.timeframe), now)]
        if due:
            await sync_to_async(self.hand_on)(due)
            self.handed_on += len(due)
        return len(due)

    def hand_on(self, rows: Sequence[BarRow]) -> None:
        schedule_partial_evaluations(rows)

    def _due(self, feed: FeedKey, now: float) -> bool:
        if feed not in self.feeds or now - self.handed_on_at.get(feed, -math.inf) < settings.ALERTS_INTRABAR_SECONDS:
            return False
        self.handed_on_at[feed] = now
        return True


#: The collector's scheduler (one per process).
intrabar = IntrabarScheduler()


def intrabar_feeds() -> frozenset[FeedKey]:
    """The feeds that have live rules judged on partial bars (see `alerts.rules.is_intrabar`)."""
    rows = (
        AlertRule.objects.live()
        .exclude(frequency=Frequency.ONCE_PER_BAR_CLOSE)
        .exclude(condition__in=[*EVENTS, Condition.VOLUME_SPIKE])
        .values_list("instrument_id", "timeframe", "source", "target")
    )
    return frozenset(
        (instrument, timeframe)
        for instrument, timeframe, source, target in rows
        if _is_price(source) and (target is None or _is_price(target))
    )


def _is_price(operand: Any) -> bool:
    return isinstance(operand, dict) and operand.get("indicator", "close") in PRICE_FIELDS


def schedule_partial_evaluations(rows: Sequence[BarRow]) -> None:
    from alerts.tasks import evaluate_partial_bar_task

    for row in rows:
        ohlcv = (row.open, row.high, row.low, row.close, row.volume)
        # A partial bar not judged before its bar closes is worth nothing: the close is judged anyway.
        evaluate_partial_bar_task.apply_async(
            (row.instrument_id, row.timeframe, row.time.isoformat(), ohlcv), expires=timeframe_seconds(row.timeframe)
        )


def check_collectors(*, now: datetime | None = None) -> list[AlertFiring]:
    """Fire `collector_down` rules whose feed has produced no bar for their number of bar periods,
    or whose instrument's collectors (per their health rows, `CollectorStatus`) are all down.

    One firing per outage: it is keyed by the newest bar seen before the outage, so checking again
    during the same outage fires nothing (whichever way it is noticed), and the next outage (after
    new bars) fires again.
    """
    now = now or timezone.now()
    rules = (
        AlertRule.objects.live(now).filter(condition=Condition.COLLECTOR_DOWN).select_related("instrument__exchange")
    )
    newest: dict[FeedKey, datetime | None] = {}
    candidates = []
    down = collectors_down(now) if rules else {}
    for rule in rules:
        feed = (rule.instrument_id, rule.timeframe)
        if feed not in newest:
            newest[feed] = (
                Bar.objects.for_series(*feed)
                .filter(final=True)
                .order_by("-time")
                .values_list("time", flat=True)
                .first()
            )
        last = newest[feed]
        if last is None:  # nothing collected yet: not a collector that went down
            continue
        seconds = timeframe_seconds(rule.timeframe)
        silence = (now - last).total_seconds() - seconds
        silent = is_silent(last.timestamp(), now.timestamp(), timeframe_seconds=seconds, bars=rule.bars or 1)
        reason = down.get(rule.instrument_id)
        if not (silent or reason) or not _may_fire(rule, last.timestamp(), now):
            continue
        detail = reason or f"no new bar for {silence / 60:.0f} minutes after the bar of {last:%Y-%m-%d %H:%M} UTC"
        candidates.append(Candidate(rule, last, silence, detail=detail))
    return record_firings(candidates, now=now)


def collectors_down(now: datetime) -> dict[int, str]:
    """Instrument id -> why its collection is down, for the instruments whose collectors (the health
    rows that list it, see `market.collector`) are all down. An instrument that another, healthy
    collector covers is not down (e.g. a collector retired without deleting its row)."""
    reasons: dict[int, list[str]] = {}
    healthy: set[int] = set()
    for status in CollectorStatus.objects.only("name", "state", "updated_at", "counters"):
        instruments = (status.counters or {}).get("instruments") or []
        if not isinstance(instruments, list):  # a row written by something else: not ours to judge
            log.warning("collector %s: counters.instruments is not a list; skipped", status.name)
            continue
        reason = collector_down_reason(
            status.state, status.updated_at.timestamp(), now.timestamp(), stale_seconds=settings.COLLECTOR_STALE_SECONDS
        )
        for instrument in instruments:
            if reason is None:
                healthy.add(instrument)
            else:
                reasons.setdefault(instrument, []).append(f"collector {status.name} is down: {reason}")
    return {instrument: "; ".join(why) for instrument, why in reasons.items() if instrument not in healthy}


def on_quality_report(report: QualityReport, *, now: datetime | None = None) -> list[AlertFiring]:
    """Fire the live data-quality rules of a report's feed that its score or findings match (see
    `alerts.events.report_issue`). Called by the quality checker for every report that changed."""
    now = now or timezone.now()
    feed = (report.instrument_id, report.timeframe)
    rules = _live_rules({feed: None}, now).filter(condition=Condition.DATA_QUALITY)
    if not rules:
        return []
    findings = [
        ReportFinding(kind, None if moment is None else moment.timestamp(), count)
        for kind, moment, count in report.findings.values_list("kind", "time", "count")
    ]
    day_start = datetime.combine(report.day, datetime.min.time(), tzinfo=UTC).timestamp()
    candidates = []
    for rule in rules:
        issue = report_issue(
            report.score, findings, day=report.day.isoformat(), day_start=day_start, spec=rule.to_spec()
        )
        if issue is not None and _may_fire(rule, issue.time, now):
            candidates.append(Candidate(rule, _utc(issue.time), float(report.score), detail=issue.description))
    return record_firings(candidates, now=now)


def record_market_event(
    condition: Condition,
    instrument_id: int,
    timeframe: str,
    bar_time: datetime,
    *,
    detail: str,
    value: float | None = None,
    now: datetime | None = None,
) -> list[AlertFiring]:
    """Fire the live event rules (`data_quality`, `collector_down`) of a feed for an event detected
    elsewhere (a quality check, a collector's own health check). Keyed by rule + `bar_time`."""
    if condition not in EVENTS:
        raise ValueError(f"{condition} is not an event condition")
    now = now or timezone.now()
    rules = _live_rules({(instrument_id, timeframe): bar_time}, now).filter(condition=condition)
    candidates = [
        Candidate(rule, bar_time, value, detail=detail)
        for rule in rules
        if may_fire(
            rule.to_spec(), bar_time.timestamp(), last_fired=_epoch(rule.last_fired_bar_time), now=now.timestamp()
        )
    ]
    return record_firings(candidates, now=now)


def _quality_candidates(rules: Sequence[AlertRule], bars: dict[FeedKey, Bars], now: datetime) -> list[Candidate]:
    candidates = []
    for rule in rules:
        feed_bars = bars.get((rule.instrument_id, rule.timeframe))
        if feed_bars is None:
            continue
        bar_time = float(feed_bars.time[-1])
        if not _may_fire(rule, bar_time, now):
            continue
        seconds = timeframe_seconds(rule.timeframe)
        gaps = not rule.finding_kinds or "gap" in rule.finding_kinds
        issues = quality_issues(
            feed_bars.time, feed_bars.close, timeframe_seconds=seconds, jump_percent=rule.percent, gaps=gaps
        )
        if issues:
            detail = "; ".join(issue.description for issue in issues)
            close, volume = float(feed_bars.close[-1]), float(feed_bars.volume[-1])
            candidates.append(Candidate(rule, _utc(bar_time), issues[0].value, close, volume, detail=detail))
    return candidates


def _may_fire(rule: AlertRule, event_time: float, now: datetime) -> bool:
    return may_fire(rule.to_spec(), event_time, last_fired=_epoch(rule.last_fired_bar_time), now=now.timestamp())


def _live_rules(feeds: dict[FeedKey, Any], now: datetime) -> QuerySet[AlertRule]:
    match = Q(pk__in=[])
    for instrument, timeframe in feeds:
        match |= Q(instrument_id=instrument, timeframe=timeframe)
    return AlertRule.objects.live(now).filter(match).select_related("instrument__exchange").order_by("pk")


def _contexts(rules: Iterable[AlertRule]) -> dict[FeedKey, Context]:
    """What indicators must know of each feed's instrument, as the chart's API gives it to them:
    a stock's VWAP follows its exchange sessions."""
    return {(rule.instrument_id, rule.timeframe): instrument_context(rule.instrument) for rule in rules}


def _load_bars(feed: FeedKey, bar_time: datetime, *, count: int, before: bool = False) -> Bars | None:
    """The newest `count` bars of a feed up to `bar_time`: inclusive, or exclusive with `before`."""
    bound = Q(time__lt=bar_time) if before else Q(time__lte=bar_time)
    query = Bar.objects.for_series(*feed).filter(bound).order_by("-time")
    rows = list(query.values_list("time", "open", "high", "low", "close", "volume", "final")[:count])
    if not rows:
        return None
    rows.reverse()
    times, opens, highs, lows, closes, volumes, finals = zip(*rows, strict=True)
    seconds = (int(t.timestamp()) for t in times)
    return Bars.from_columns(seconds, opens, highs, lows, closes, volumes, final=bool(finals[-1]))


def _append(history: Bars, last: Bars) -> Bars:
    def join(name: str) -> Any:
        return np.concatenate([getattr(history, name), getattr(last, name)])

    return Bars(join("time"), join("open"), join("high"), join("low"), join("close"), join("volume"), last.final)


def _epoch(moment: datetime | None) -> float:
    return math.nan if moment is None else moment.timestamp()


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


# --- Recording firings ---------------------------------------------------------------------------


def record_firings(candidates: Sequence[Candidate], *, now: datetime | None = None) -> list[AlertFiring]:
    """Store each candidate firing once, with its deliveries and notification; deliver after commit.

    A candidate whose rule already fired for that bar (a replay, or two workers on the same bar)
    hits the unique constraint and is skipped.
    """
    now = now or timezone.now()
    recorded = []
    with transaction.atomic():
        for candidate in candidates:
            firing = _record_one(candidate, now)
            if firing is not None:
                recorded.append(firing)
    return recorded


def _record_one(candidate: Candidate, now: datetime) -> AlertFiring | None:
    rule = candidate.rule
    message = firing_message(candidate)
    try:
        with transaction.atomic():
            firing = AlertFiring.objects.create(
                rule=rule,
                bar_time=candidate.bar_time,
                fired_at=now,
                intrabar=candidate.intrabar,
                value=candidate.value,
                close=candidate.close,
                volume=candidate.volume,
                message=message,
                payload=firing_payload(candidate, message, now),
            )
    except IntegrityError:
        log.info("rule %s already fired for the bar of %s: skipped", rule.pk, candidate.bar_time)
        return None
    channels = [Channel(c) for c in dict.fromkeys(rule.channels or []) if c in Channel.values]
    deliveries = Delivery.objects.bulk_create([Delivery(firing=firing, channel=c) for c in channels])
    if Channel.IN_APP in channels:
        Notification.objects.create(user_id=rule.owner_id, firing=firing, message=message, created_at=now)
    changes: dict[str, Any] = {"last_fired_at": now, "fire_count": F("fire_count") + 1}
    if rule.frequency == Frequency.ONCE:
        changes["active"] = False
    AlertRule.objects.filter(pk=rule.pk).update(**changes)
    AlertRule.objects.filter(
        Q(last_fired_bar_time__isnull=True) | Q(last_fired_bar_time__lt=candidate.bar_time), pk=rule.pk
    ).update(last_fired_bar_time=candidate.bar_time)
    transaction.on_commit(partial(_schedule_deliveries, [d.pk for d in deliveries]))
    return firing


def firing_message(candidate: Candidate) -> str:
    rule = candidate.rule
    template = rule.message or default_template(describe(rule.to_spec()), event=candidate.close is None)
    context = {
        "ticker": rule.instrument.symbol,
        "exchange": rule.instrument.exchange.code,
        "timeframe": rule.timeframe,
        "close": candidate.close,
        "volume": candidate.volume,
        "time": candidate.bar_time,
        "value": candidate.value,
    }
    text = render_message(template, context)
    return f"{text} ({candidate.detail})" if candidate.detail else text


def firing_payload(candidate: Candidate, message: str, now: datetime) -> dict[str, Any]:
    """The JSON every channel receives (webhook body, WebSocket message), less the firing id."""
    rule = candidate.rule
    return {
        "rule": {
            "id": rule.pk,
            "name": rule.name,
            "condition": rule.condition,
            "description": describe(rule.to_spec()),
        },
        "instrument": {
            "id": rule.instrument_id,
            "symbol": rule.instrument.symbol,
            "exchange": rule.instrument.exchange.code,
        },
        "timeframe": rule.timeframe,
        "bar_time": candidate.bar_time.isoformat().replace("+00:00", "Z"),
        "fired_at": now.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "intrabar": candidate.intrabar,
        "value": _finite(candidate.value),
        "close": _finite(candidate.close),
        "volume": _finite(candidate.volume),
        "message": message,
        "detail": candidate.detail,
    }


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value


def _schedule_deliveries(delivery_ids: list[int]) -> None:
    from alerts.tasks import deliver_alert_task

    for delivery_id in delivery_ids:
        deliver_alert_task.delay(delivery_id)


# --- Rule and notification housekeeping ------------------------------------------------------------


def rotate_webhook_secret(rule: AlertRule) -> str:
    rule.webhook_secret = new_webhook_secret()
    rule.save(update_fields=["webhook_secret", "updated_at"])
    return rule.webhook_secret


def mark_notifications_read(user_id: int, notification_ids: Sequence[int] | None = None) -> int:
    """Mark a user's unread notifications read (all of them, or those listed). Returns how many."""
    query = Notification.objects.filter(user_id=user_id, read_at__isnull=True)
    if notification_ids is not None:
        query = query.filter(pk__in=notification_ids)
    return query.update(read_at=timezone.now())

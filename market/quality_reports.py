"""Quality reports: load a day of bars, score it with the pure checker (`market.quality`), record it.

Recording is idempotent: a report whose score and findings come out the same is left untouched
(its `updated_at` says when it last changed), so the hourly task rewrites nothing on a quiet day.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pandas as pd
from django.conf import settings
from django.db import transaction
from django.db.models import Q

from market.models import Bar, Instrument, QualityFinding, QualityReport
from market.quality import DayQuality, Finding, check_day, day_spans
from market.rollup import SESSION_ASSET_CLASSES
from market.sessions import session_on

log = logging.getLogger(__name__)

FRAME_COLUMNS = ["time", "open", "high", "low", "close", "volume"]
# The outlier statistics' baseline: this much before the day, besides the day itself.
HISTORY = timedelta(days=1)


@dataclass
class QualityRun:
    reports: int = 0
    changed: int = 0
    below_100: int = 0

    def __str__(self) -> str:
        return f"{self.reports} report(s), {self.changed} changed, {self.below_100} below 100"


def check_quality(day: date, now: datetime, timeframes: Sequence[str] | None = None) -> QualityRun:
    """Score `day` for every active instrument and each of `timeframes` (default: settings)."""
    run = QualityRun()
    for instrument in Instrument.objects.active().select_related("exchange").order_by("pk"):
        for timeframe in timeframes or settings.QUALITY_TIMEFRAMES:
            before = QualityReport.objects.filter(instrument=instrument, timeframe=timeframe, day=day).first()
            report = score_day(instrument, timeframe, day, now)
            if report is None:
                continue
            run.reports += 1
            changed = before is None or report.updated_at != before.updated_at
            run.changed += changed
            run.below_100 += report.score < 100
            if changed:
                announce_report(report, now)
    log.info("data quality of %s: %s", day, run)
    return run


def announce_report(report: QualityReport, now: datetime) -> None:
    """A new or changed report, to the data-quality alert rules of its feed. A failure there is
    logged and never stops the checker."""
    try:
        from alerts.services import on_quality_report  # imported here: alerts builds on market

        on_quality_report(report, now=now)
    except Exception:
        log.exception("could not judge data-quality alert rules on %s", report)


def score_day(instrument: Instrument, timeframe: str, day: date, now: datetime) -> QualityReport | None:
    """Score one instrument/timeframe/day and record it; None if its market did not open that day."""
    spans = open_spans(instrument, day)
    if spans is None:
        return None
    start, end = spans[0][0], spans[-1][1]
    reference = _reference_bars(instrument, timeframe, start, end)
    quality = check_day(
        load_bars(instrument.pk, timeframe, start, end),
        timeframe=timeframe,
        open_spans=spans,
        now=now,
        history=load_bars(instrument.pk, timeframe, start - HISTORY, start),
        reference=reference,
    )
    return record_report(instrument, timeframe, day, quality, now)


def open_spans(instrument: Instrument, day: date) -> list[tuple[datetime, datetime]] | None:
    """When the market of `instrument` was open on `day`: the UTC day, or the exchange session."""
    if instrument.asset_class not in SESSION_ASSET_CLASSES:
        return day_spans(datetime.combine(day, time(), tzinfo=UTC))
    session = session_on(settings.SESSION_CALENDAR, day)
    if session is None:
        return None
    spans = []
    start = session.open
    for break_start, break_end in session.breaks:
        spans.append((start, break_start))
        start = break_end
    spans.append((start, session.close))
    return spans


def load_bars(instrument_id: int, timeframe: str, start: datetime, end: datetime) -> pd.DataFrame:
    rows = (
        Bar.objects.for_series(instrument_id, timeframe)
        .filter(time__gte=start, time__lt=end)
        .order_by("time")
        .values_list(*FRAME_COLUMNS)
    )
    return pd.DataFrame.from_records(list(rows), columns=FRAME_COLUMNS)


def _reference_bars(instrument: Instrument, timeframe: str, start: datetime, end: datetime) -> pd.DataFrame | None:
    """The same instrument from another source (same symbol, or same base and quote), if stored."""
    same = Q(symbol=instrument.symbol)
    if instrument.base and instrument.quote:
        same |= Q(base=instrument.base, quote=instrument.quote)
    for twin in Instrument.objects.filter(same).exclude(pk=instrument.pk).order_by("pk"):
        bars = load_bars(twin.pk, timeframe, start, end)
        if not bars.empty:
            return bars
    return None


def record_report(
    instrument: Instrument, timeframe: str, day: date, quality: DayQuality, now: datetime
) -> QualityReport:
    values: dict[str, Any] = {"score": quality.score, "bars": quality.bars, "expected_bars": quality.expected}
    with transaction.atomic():
        report, created = QualityReport.objects.select_for_update().get_or_create(
            instrument=instrument, timeframe=timeframe, day=day, defaults={**values, "updated_at": now}
        )
        stored = [_key(finding) for finding in report.findings.all()]
        if not created and _unchanged(report, values) and sorted(stored, key=_order) == _sorted(quality.findings):
            return report
        for name, value in values.items():
            setattr(report, name, value)
        report.updated_at = now
        report.save()
        report.findings.all().delete()
        QualityFinding.objects.bulk_create(
            QualityFinding(report=report, kind=f.kind, time=f.time, count=f.count, penalty=f.penalty, detail=f.detail)
            for f in quality.findings
        )
    return report


def _unchanged(report: QualityReport, values: dict[str, Any]) -> bool:
    return all(getattr(report, name) == value for name, value in values.items())


FindingKey = tuple[str, datetime | None, int, float, str]


def _key(finding: QualityFinding | Finding) -> FindingKey:
    return (finding.kind, finding.time, finding.count, finding.penalty, finding.detail)


def _order(key: FindingKey) -> tuple[Any, ...]:
    kind, moment, *_ = key
    return (moment is None, moment or datetime.min.replace(tzinfo=UTC), kind, key[4])


def _sorted(findings: Sequence[Finding]) -> list[FindingKey]:
    return sorted((_key(finding) for finding in findings), key=_order)

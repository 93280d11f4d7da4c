"""Event rules: data-quality problems and collectors gone quiet or down. Pure: no Django, no clock.

These are few per feed and need no indicators, so they are plain functions rather than part of the
vectorized engine; they honour the same firing options (see `may_fire`).

A `data_quality` rule is judged two ways: when a bar closes (`quality_issues`: bars missing before
it, a jump above `percent`), and when the quality checker scores a day (`report_issue`: a score
below `level`, findings of the kinds it lists). A `collector_down` rule fires when its feed has had
no bar for `bars` periods (`is_silent`), or when every collector that covers its instrument is down
(`collector_down_reason`); both key the firing by the feed's newest bar, so one outage fires once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from alerts.rules import Frequency, RuleSpec

# Collector states that mean the collector is not collecting (market.models.CollectorState).
DOWN_STATES = {
    "breaker-open": "its circuit breaker is open (the source keeps failing)",
    "stopped": "it was stopped",
}


@dataclass(frozen=True, slots=True)
class QualityIssue:
    description: str
    value: float  # missing bars, or the jump in percent


def quality_issues(
    time: npt.NDArray[np.int64],
    close: npt.NDArray[np.float64],
    *,
    timeframe_seconds: int,
    jump_percent: float | None = None,
    gaps: bool = True,
) -> list[QualityIssue]:
    """What is wrong with the newest bar compared with the one before it: missing bars in between
    (if `gaps`), or (if `jump_percent` is given) a close more than that many percent away from the
    previous one."""
    if len(time) < 2:
        return []
    issues = []
    missing = int(time[-1] - time[-2]) // timeframe_seconds - 1
    if gaps and missing > 0:
        issues.append(QualityIssue(f"{missing} missing bar{'s' if missing > 1 else ''} before this one", missing))
    if jump_percent is not None and close[-2] > 0:
        jump = (float(close[-1]) / float(close[-2]) - 1) * 100
        if abs(jump) > jump_percent:
            issues.append(QualityIssue(f"close jumped {jump:+.2f}% from the previous bar", jump))
    return issues


def judged_on_bar_close(spec: RuleSpec) -> bool:
    """Whether a data-quality rule is judged on closing bars too: not a score threshold (a report's
    business), and unless it only wants finding kinds a closing bar cannot show."""
    if spec.level is not None:
        return False
    return not spec.finding_kinds or "gap" in spec.finding_kinds or spec.percent is not None


@dataclass(frozen=True, slots=True)
class ReportFinding:
    kind: str
    time: float | None  # the first bar concerned (epoch seconds), if any
    count: int


@dataclass(frozen=True, slots=True)
class ReportIssue:
    time: float  # what the firing is keyed by: the newest finding concerned, else the day's start
    description: str


def report_issue(
    score: int, findings: list[ReportFinding], *, day: str, day_start: float, spec: RuleSpec
) -> ReportIssue | None:
    """Whether a day's quality report should fire a data-quality rule, and about what.

    With `level`, the score must be below it; with `finding_kinds`, there must be a finding of one
    of those kinds; both: both; neither: any finding at all. The firing is keyed by the newest
    finding concerned, so a report rewritten with the same findings fires nothing new, and new
    problems later in the day fire again.
    """
    concerned = [f for f in findings if not spec.finding_kinds or f.kind in spec.finding_kinds]
    if spec.level is not None and score >= spec.level:
        return None
    if (spec.finding_kinds or spec.level is None) and not concerned:
        return None
    times = [f.time for f in concerned if f.time is not None]
    counts: dict[str, tuple[int, int]] = {}
    for finding in concerned:
        seen, bars = counts.get(finding.kind, (0, 0))
        counts[finding.kind] = (seen + 1, bars + finding.count)
    listed = ", ".join(f"{kind.replace('_', ' ')} x{seen} ({bars} bars)" for kind, (seen, bars) in counts.items())
    description = f"quality score {score} for {day}" + (f": {listed}" if listed else "")
    return ReportIssue(max(times) if times else day_start, description)


def collector_down_reason(state: str, updated_at: float, now: float, *, stale_seconds: float) -> str | None:
    """Why a collector counts as down from its health row, or None if it is up: stopped, its
    circuit open, or no report for `stale_seconds` (it died without saying so)."""
    if state != "stopped" and now - updated_at > stale_seconds:
        return f"it has not reported for {now - updated_at:.0f} s"
    return DOWN_STATES.get(state)


def is_silent(last_bar_time: float, now: float, *, timeframe_seconds: int, bars: int) -> bool:
    """Whether a feed whose newest bar opened at `last_bar_time` has produced no bar for more than
    `bars` bar periods since that bar closed."""
    return now - (last_bar_time + timeframe_seconds) > bars * timeframe_seconds


def may_fire(spec: RuleSpec, event_time: float, *, last_fired: float | None, now: float) -> bool:
    """The engine's firing options for one event rule: active, not expired, after its last firing
    and its cooldown, and only once ever for ONCE."""
    if not spec.active or (spec.expires_at is not None and now >= spec.expires_at):
        return False
    if last_fired is None or math.isnan(last_fired):
        return True
    if spec.frequency is Frequency.ONCE:
        return False
    return event_time > last_fired and event_time >= last_fired + spec.cooldown_seconds

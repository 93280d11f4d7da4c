"""Event rules: data-quality problems and collectors gone quiet. Pure: no Django, no clock.

These are few per feed and need no indicators, so they are plain functions rather than part of the
vectorized engine; they honour the same firing options (see `may_fire`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from alerts.rules import Frequency, RuleSpec


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
) -> list[QualityIssue]:
    """What is wrong with the newest bar compared with the one before it: missing bars in between,
    or (if `jump_percent` is given) a close more than that many percent away from the previous one."""
    if len(time) < 2:
        return []
    issues = []
    missing = int(time[-1] - time[-2]) // timeframe_seconds - 1
    if missing > 0:
        issues.append(QualityIssue(f"{missing} missing bar{'s' if missing > 1 else ''} before this one", missing))
    if jump_percent is not None and close[-2] > 0:
        jump = (float(close[-1]) / float(close[-2]) - 1) * 100
        if abs(jump) > jump_percent:
            issues.append(QualityIssue(f"close jumped {jump:+.2f}% from the previous bar", jump))
    return issues


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

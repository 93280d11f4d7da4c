"""Our 1m bars against the exchange's own (Binance kline_1m, Alpaca minute bars). Pure.

A difference "beyond rounding" is one larger than `tolerance` relative to the exchange's value: our
volumes are float sums of decimal strings, the exchange sums decimals exactly, so the last bits may
differ and must not count. When the source can tell that we did not see every trade of the minute
(Binance: by trade ids), the bars cannot be equal; then ours must at least lie within the exchange's
(high not above, low not below, volume not more), or the difference is real.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from market.bars import MinuteBar
from market.sources.base import ExchangeBar


class Verdict(enum.StrEnum):
    MATCH = "match"
    MISMATCH = "mismatch"
    INCOMPLETE = "incomplete"  # we did not see the whole minute; what we saw is consistent with theirs
    MISSING = "missing"  # the exchange has trades in a minute we have no bar for
    EMPTY = "empty"  # the exchange's bar of a minute without trades; we make no bar for those


@dataclass(frozen=True, slots=True)
class Reconciliation:
    verdict: Verdict
    differences: tuple[str, ...] = ()


def _close(ours: float, theirs: float, tolerance: float) -> bool:
    return abs(ours - theirs) <= tolerance * max(abs(theirs), 1e-12)


def reconcile(ours: MinuteBar | None, theirs: ExchangeBar, *, tolerance: float = 1e-9) -> Reconciliation:
    if ours is None:
        if theirs.volume == 0:
            return Reconciliation(Verdict.EMPTY)
        if theirs.covered is False:
            return Reconciliation(Verdict.INCOMPLETE, ("no bar: we saw none of its trades",))
        return Reconciliation(Verdict.MISSING, (f"no bar, the exchange has volume {theirs.volume}",))
    fields = ("open", "high", "low", "close", "volume")
    if theirs.covered is False:
        problems = []
        if ours.high > theirs.high * (1 + tolerance):
            problems.append(f"high {ours.high} above the exchange's {theirs.high}")
        if ours.low < theirs.low * (1 - tolerance):
            problems.append(f"low {ours.low} below the exchange's {theirs.low}")
        if ours.volume > theirs.volume * (1 + tolerance):
            problems.append(f"volume {ours.volume} above the exchange's {theirs.volume}")
        return Reconciliation(Verdict.MISMATCH if problems else Verdict.INCOMPLETE, tuple(problems))
    differences = tuple(
        f"{name} {getattr(ours, name)} != {getattr(theirs, name)}"
        for name in fields
        if not _close(getattr(ours, name), getattr(theirs, name), tolerance)
    )
    return Reconciliation(Verdict.MISMATCH if differences else Verdict.MATCH, differences)

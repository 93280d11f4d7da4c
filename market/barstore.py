"""The bar store: idempotent bulk upsert of bars. (Placeholder: replaced by the COPY-based store.)"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple


class BarRow(NamedTuple):
    instrument_id: int
    timeframe: str
    time: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float
    trades: int | None
    vwap: float | None
    final: bool


@dataclass(frozen=True, slots=True)
class UpsertResult:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0


def upsert_bars(rows: Sequence[BarRow]) -> UpsertResult:
    from market.models import Bar

    Bar.objects.bulk_create(
        [Bar(**row._asdict()) for row in rows],
        update_conflicts=True,
        unique_fields=["instrument", "timeframe", "time"],
        update_fields=["open", "high", "low", "close", "volume", "trades", "vwap", "final"],
    )
    return UpsertResult(inserted=len(rows))

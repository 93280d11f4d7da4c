"""A collector's health, as stored in `CollectorStatus` (admin, /ready, /api/v1/collectors/).

`HealthSnapshot` is pure: the collector fills it from its counters and the source's health. The
write is one `update_or_create` every few seconds; when the database is down the collector keeps
going and the next report catches up.
"""

from __future__ import annotations

import os
import socket
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.db import DatabaseError, close_old_connections

from market.models import CollectorState, CollectorStatus


@dataclass
class HealthSnapshot:
    name: str
    source: str
    state: str
    breaker_state: str
    last_message_at: datetime | None
    messages_per_second: float
    messages: int
    trades: int
    bars_stored: int
    buffered_bars: int
    reconnects: int
    rejected_reasons: dict[str, int]
    counters: dict[str, Any]
    symbols: int
    last_error: str
    started_at: datetime
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def rejected(self) -> int:
        return sum(self.rejected_reasons.values())


def state_for(source_state: str, *, idle: bool) -> str:
    if idle:
        return CollectorState.IDLE
    return source_state if source_state in CollectorState.values else CollectorState.STREAMING


def save_health(snapshot: HealthSnapshot) -> None:
    """Runs in a worker thread."""
    close_old_connections()
    values = asdict(snapshot)
    name = values.pop("name")
    values["rejected"] = snapshot.rejected
    values["last_error"] = snapshot.last_error[:500]
    values["host"] = socket.gethostname()[:255]
    values["pid"] = os.getpid()
    CollectorStatus.objects.update_or_create(name=name, defaults=values)


def try_save_health(snapshot: HealthSnapshot) -> bool:
    try:
        save_health(snapshot)
    except DatabaseError:
        return False
    return True

"""Writes and broadcasts for market data: the one place that changes bars and tells clients.

Broadcasts go out only after the transaction that stored the bars has committed, so a client never
sees a bar that a rollback took back.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from market.barstore import BarRow, UpsertResult, upsert_bars
from market.groups import bars_group

log = logging.getLogger(__name__)


def bar_payload(row: BarRow) -> dict[str, Any]:
    """The JSON shape of a bar on the wire (API and WebSocket): time in UTC epoch seconds."""
    return {
        "time": int(row.time.timestamp()),
        "open": row.open,
        "high": row.high,
        "low": row.low,
        "close": row.close,
        "volume": row.volume,
        "trades": row.trades,
        "vwap": row.vwap,
        "final": row.final,
    }


def bar_message(row: BarRow) -> dict[str, Any]:
    return {
        "type": "bar.update",
        "instrument": row.instrument_id,
        "timeframe": row.timeframe,
        "bar": bar_payload(row),
    }


def store_bars(rows: Sequence[BarRow], *, publish: bool = True) -> UpsertResult:
    """Upsert bars and, once committed, publish those that were inserted or changed."""
    with transaction.atomic():
        result = upsert_bars(rows)
        if publish and rows:
            changed = list(rows)
            transaction.on_commit(lambda: publish_bars(changed))
    return result


def publish_bars(rows: Sequence[BarRow]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    send = async_to_sync(layer.group_send)
    for row in rows:
        send(bars_group(row.instrument_id, row.timeframe), bar_message(row))


async def apublish_bar(row: BarRow) -> None:
    """Publish one bar from async code (the collector's partial updates): no database involved."""
    layer = get_channel_layer()
    if layer is not None:
        await layer.group_send(bars_group(row.instrument_id, row.timeframe), bar_message(row))


def utc_from_ms(time_ms: int) -> datetime:
    return datetime.fromtimestamp(time_ms / 1000, tz=UTC)

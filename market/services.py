"""Writes and broadcasts for market data: the one place that changes bars and tells clients.

Broadcasts go out only after the transaction that stored the bars has committed, so a client never
sees a bar that a rollback took back.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from market.barstore import BarRow, UpsertResult, upsert_bar_frame, upsert_bars
from market.groups import bars_group
from market.models import Exchange, Instrument

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
        result = upsert_bars(rows, report_written=publish)
        written = [row for row in rows if result.wrote(row)] if publish else []
        if written:
            transaction.on_commit(lambda: publish_bars(written))
    return result


def store_bar_frame(frame: pd.DataFrame, *, instrument_id: int, timeframe: str) -> UpsertResult:
    """Upsert a DataFrame of bars of one series (imports, history): columnar all the way to COPY.

    Not published: history is not news. Charts pick it up on their next load.
    """
    with transaction.atomic():
        return upsert_bar_frame(frame, instrument_id=instrument_id, timeframe=timeframe)


def ensure_instrument(exchange_code: str, symbol: str) -> Instrument:
    """The instrument `symbol` on `exchange_code`, created (with its exchange) if missing."""
    exchange, _ = Exchange.objects.get_or_create(code=exchange_code, defaults={"name": exchange_code})
    instrument, _ = Instrument.objects.get_or_create(exchange=exchange, symbol=symbol)
    return instrument


def publish_bars(rows: Sequence[BarRow]) -> None:
    _schedule_alert_evaluation(rows)
    layer = get_channel_layer()
    if layer is None:
        return
    from indicators.realtime import live_indicator_values  # imported here: indicators builds on market

    messages = []
    for row in rows:
        message = bar_message(row)
        if row.final:
            # Indicator panes update with the bar: the indicators app's latest values, O(1) per bar.
            message["indicators"] = live_indicator_values(row)
        messages.append((bars_group(row.instrument_id, row.timeframe), message))
    # One trip into the event loop for the whole batch: a roll-up publishes thousands of bars at once,
    # and an async_to_sync per bar costs more than the send itself.
    async_to_sync(_send_all)(layer, messages)


async def _send_all(layer: Any, messages: list[tuple[str, dict[str, Any]]]) -> None:
    for group, message in messages:
        await layer.group_send(group, message)


def _schedule_alert_evaluation(rows: Sequence[BarRow]) -> None:
    """Alert rules are judged on published final bars (store_bars and the roll-up both publish after
    commit). A failure there is logged and never stops the bars from being published."""
    try:
        from alerts.services import on_bars_stored  # imported here: alerts builds on market

        on_bars_stored(rows)
    except Exception:
        log.exception("could not schedule alert evaluation for %d bars", len(rows))


async def apublish_bar(row: BarRow) -> None:
    """Publish one bar from async code (the collector's partial updates): no database involved."""
    layer = get_channel_layer()
    if layer is not None:
        await layer.group_send(bars_group(row.instrument_id, row.timeframe), bar_message(row))


async def aschedule_intrabar_alerts(rows: Sequence[BarRow]) -> None:
    """Partial bars just published, to the alert rules judged intrabar (from async code: the
    collector). Cheap when no rule watches these feeds; a failure is logged and never stops the
    collector."""
    try:
        from alerts.services import intrabar  # imported here: alerts builds on market

        await intrabar.on_partial_bars(rows)
    except Exception:
        log.exception("could not schedule intrabar alert evaluation for %d partial bars", len(rows))


def utc_from_ms(time_ms: int) -> datetime:
    return datetime.fromtimestamp(time_ms / 1000, tz=UTC)

"""Writes and broadcasts for market data: the one place that changes bars and tells clients.

Broadcasts go out only after the transaction that stored the bars has committed, so a client never
sees a bar that a rollback took back.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import orjson
import pandas as pd
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.db import transaction

from market import group_batch
from market.bars_cache import invalidate_cached_bars
from market.barstore import BarRow, UpsertResult, upsert_bar_frame, upsert_bars
from market.collector_health import HealthSnapshot
from market.groups import ARBITRAGE_GROUP, COLLECTORS_GROUP, bars_group
from market.models import Bar, Exchange, Instrument

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


def bar_message(row: BarRow, indicators: dict[str, Any] | None = None) -> dict[str, Any]:
    """The channel-layer message of one bar (the collector's partial updates): its fields, and the
    WebSocket frame encoded once here so that each connection forwards the same text instead of
    encoding it again (market.live_hub)."""
    message: dict[str, Any] = {
        "type": "bar.update",
        "group": bars_group(row.instrument_id, row.timeframe),
        "instrument": row.instrument_id,
        "timeframe": row.timeframe,
        "bar": bar_payload(row),
    }
    if row.final:  # final bars carry the latest indicator values (null while there is too little history)
        message["indicators"] = indicators
    message["text"] = encode_frame({"type": "bar", **{k: message[k] for k in FRAME_FIELDS if k in message}})
    return message


# Bars per batch message at most: a catch-up can close thousands of bars of one series in one flush,
# and one channel-layer message of a few hundred kilobytes is still cheap for Redis while one of
# tens of megabytes is not.
MAX_BARS_PER_MESSAGE = 500


def bar_batch_messages(rows: Sequence[BarRow], indicators: Sequence[Any] | None = None) -> list[dict[str, Any]]:
    """The channel-layer messages of a batch of bars: one per series (and per MAX_BARS_PER_MESSAGE
    bars), each carrying its bars in the order given as `{"time", "final", "text"}` items, `text`
    being the client's frame, exactly as `bar_message` encodes it. `indicators[i]` goes with
    `rows[i]` (final bars only).

    Why one message for many bars: with channels_redis every group_send costs four Redis round
    trips, so a flush of 2,000 final bars took 2,000 x 4 of them, one after the other, and the
    consumers' hubs woke once per bar. The clients still get one frame per bar (docs/websocket.md).
    """
    by_series: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for index, row in enumerate(rows):
        values = indicators[index] if indicators is not None and row.final else None
        item = bar_item(row.instrument_id, row.timeframe, bar_payload(row), values)
        by_series.setdefault((row.instrument_id, row.timeframe), []).append(item)
    return [
        batch_message(instrument_id, timeframe, bars=items[start : start + MAX_BARS_PER_MESSAGE])
        for (instrument_id, timeframe), items in by_series.items()
        for start in range(0, len(items), MAX_BARS_PER_MESSAGE)
    ]


def bar_item(instrument_id: int, timeframe: str, payload: dict[str, Any], indicators: Any) -> dict[str, Any]:
    """A batch message's item for one bar (`bar_payload`'s shape): its time, whether it is final, and
    the client's frame text; a final bar's frame carries its indicator values (None if unknown)."""
    frame: dict[str, Any] = {"type": "bar", "instrument": instrument_id, "timeframe": timeframe, "bar": payload}
    if payload["final"]:
        frame["indicators"] = indicators
    return {"time": payload["time"], "final": payload["final"], "text": encode_frame(frame)}


def batch_message(instrument_id: int, timeframe: str, **body: Any) -> dict[str, Any]:
    """A `bars.update` message to the series' group: its bars as `bars` items or as `columns`."""
    group = bars_group(instrument_id, timeframe)
    return {"type": "bars.update", "group": group, "instrument": instrument_id, "timeframe": timeframe, **body}


FRAME_FIELDS = ("instrument", "timeframe", "bar", "indicators")


def encode_frame(payload: dict[str, Any]) -> str:
    """JSON text of a WebSocket frame. orjson: several times faster than json, NaN becomes null (valid
    JSON, unlike json's NaN) and numpy scalars from the indicator maths serialize as numbers."""
    return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def store_bars(rows: Sequence[BarRow], *, publish: bool = True) -> UpsertResult:
    """Upsert bars and, once committed, publish those that were inserted or changed."""
    with transaction.atomic():
        result = upsert_bars(rows, report_written=publish)
        if result.inserted or result.updated:
            bars_changed(row.instrument_id for row in rows)
        written = [row for row in rows if result.wrote(row)] if publish else []
        if written:
            transaction.on_commit(lambda: publish_bars(written))
    return result


def store_bar_frame(frame: pd.DataFrame, *, instrument_id: int, timeframe: str) -> UpsertResult:
    """Upsert a DataFrame of bars of one series (imports, history): columnar all the way to COPY.

    Not published: history is not news. Charts pick it up on their next load.
    """
    with transaction.atomic():
        result = upsert_bar_frame(frame, instrument_id=instrument_id, timeframe=timeframe)
        if result.inserted or result.updated:
            bars_changed([instrument_id])
    return result


def bars_changed(instrument_ids: Iterable[int]) -> None:
    """Bars of these instruments were written or deleted: once the transaction commits, cached API
    responses of theirs are dropped. Every path that changes bars calls this (or a service that does):
    the stores above, the roll-up, retention and the admin. Outside a transaction it acts at once.
    """
    changed = set(instrument_ids)
    if changed:
        transaction.on_commit(lambda: invalidate_cached_bars(changed))


def delete_bars(keys: Iterable[tuple[int, str, datetime]]) -> int:
    """Delete the bars of these (instrument_id, timeframe, time) keys (the admin); once committed,
    the cached API responses of their instruments are dropped. Returns how many were deleted.

    The roll-up is not told: like retention, a deleted minute leaves the higher timeframes as they
    were (PendingRollup records writes, not deletes; docs/scheduled.md)."""
    wanted = [(instrument_id, timeframe, time) for instrument_id, timeframe, time in keys]
    if not wanted:
        return 0
    with transaction.atomic():
        deleted, _ = Bar.objects.filter(pk__in=wanted).delete()
        if deleted:
            bars_changed(instrument_id for instrument_id, _, _ in wanted)
    return deleted


def ensure_instrument(exchange_code: str, symbol: str) -> Instrument:
    """The instrument `symbol` on `exchange_code`, created (with its exchange) if missing."""
    exchange, _ = Exchange.objects.get_or_create(code=exchange_code, defaults={"name": exchange_code})
    instrument, _ = Instrument.objects.get_or_create(exchange=exchange, symbol=symbol)
    return instrument


def publish_bars(rows: Sequence[BarRow]) -> None:
    """Broadcast bars to their groups (every group, whether anyone listens or not) and hand the final
    ones to the alert rules."""
    _schedule_alert_evaluation(rows)
    _broadcast(rows)


def publish_bars_to_listeners(rows: Sequence[BarRow]) -> int:
    """Like `publish_bars`, but broadcast only to the groups somebody listens to (asked in one round
    trip, see `listened_groups`); the alert rules get every bar. Returns how many were broadcast.

    For writers of many bars at once that few clients watch: the roll-up changes 5,000 bars a minute
    for 1,000 instruments, and broadcasting all of them cost channels_redis two round trips each
    (about a second), plus the live indicator values of every final one.
    """
    if not rows:
        return 0
    listened = async_to_sync(listened_groups)({bars_group(row.instrument_id, row.timeframe) for row in rows})
    return announce_bars(rows, listened)


def announce_bars(rows: Sequence[BarRow], listened: set[str]) -> int:
    """Stored bars (after the commit): broadcast those of the `listened` groups, with the live
    indicator values, and hand all of them to the alert rules; returns how many were broadcast.

    The others are not broadcast: a message nobody receives costs channels_redis two round trips,
    and a final bar's indicator values would be computed for nobody."""
    _schedule_alert_evaluation(rows)
    heard = [row for row in rows if bars_group(row.instrument_id, row.timeframe) in listened]
    _broadcast(heard)
    return len(heard)


async def listened_groups(groups: set[str]) -> set[str]:
    """The groups with at least one member, asked of the configured channel layer in one round trip
    (`market.group_batch`); all of them if it cannot tell."""
    return await group_batch.listened_groups(get_channel_layer(), groups)


def _broadcast(rows: Sequence[BarRow]) -> None:
    layer = get_channel_layer()
    if layer is None or not rows:
        return
    # One trip into the event loop for the whole batch, and on Redis three round trips for all the
    # groups instead of four per group: a roll-up publishes hundreds of bars at once.
    async_to_sync(send_bar_messages)(layer, prepare_bar_messages(rows))


def prepare_bar_messages(rows: Sequence[BarRow]) -> list[dict[str, Any]]:
    """The batch messages of stored bars, final ones with the live indicator values (reads the
    database when a series is opened or has a gap: call from a worker thread in async code).

    A series whose rows start with COLUMNS_MIN_BARS final bars or more in time order (a catch-up, a
    replay) sends those as columnar messages (`bar_column_messages`), their indicator values straight
    from one vectorized pass; everything else (a bar a minute, live) goes as items of one frame each."""
    # Imported here: indicators builds on market.
    from indicators.realtime import live_indicator_columns, live_indicator_values_many

    by_series: dict[tuple[int, str], list[BarRow]] = {}
    for row in rows:
        by_series.setdefault((row.instrument_id, row.timeframe), []).append(row)
    messages: list[dict[str, Any]] = []
    by_bar: list[BarRow] = []
    for series_key, series_rows in by_series.items():
        leading = _final_run(series_rows)
        if leading >= COLUMNS_MIN_BARS:
            columns = live_indicator_columns(series_key, series_rows[:leading])
            if columns is not None:
                # The rest (an open bar stored at shutdown, a correction) follows as items.
                messages.extend(bar_column_messages(series_rows[:leading], columns))
                series_rows = series_rows[leading:]
        by_bar.extend(series_rows)
    # Indicator panes update with final bars: the indicators app's latest values, O(1) per bar.
    return messages + bar_batch_messages(by_bar, live_indicator_values_many(by_bar)) if by_bar else messages


# From this many final bars of a series in one publishing round on, they travel as columns: below
# it (a bar a minute per series, live) the per-bar items are as cheap and the indicators go bar by
# bar anyway (indicators.realtime.BATCH_MIN_BARS).
COLUMNS_MIN_BARS = 64


def _final_run(rows: Sequence[BarRow]) -> int:
    """How many of the rows, from the first, are final bars in time order."""
    if not rows or not rows[0].final:
        return 0
    for count, (earlier, later) in enumerate(pairwise(rows), start=1):
        if not later.final or later.time <= earlier.time:
            return count
    return len(rows)


BAR_COLUMNS = ("time", "open", "high", "low", "close", "volume", "trades", "vwap")


def bar_column_messages(rows: Sequence[BarRow], indicators: dict[str, dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The channel-layer messages of final bars of one series, oldest first, as columns: one per
    MAX_BARS_PER_MESSAGE bars, `{"type": "bars.update", "group", "instrument", "timeframe",
    "columns"}`, `columns` being the JSON text of `{"time": [...], "open": [...], ..., "vwap": [...],
    "indicators": {key: {output: [...]}} | null}` (BAR_COLUMNS; the values of `indicators[key][output]`
    go with the rows, NaN becoming null).

    Why: a bar per item costs the publisher a payload dict, an indicator dict per key and a frame
    encoding per bar, which made up most of a subscribed catch-up's time in the collector; columns
    are encoded in one call (under 1 µs a bar). The web processes' consumers turn them back into the
    clients' frames, one per bar, exactly as `bar_batch_messages` would have (`batch_items`): once per
    process and message, and only in processes with a subscriber of the series (about 12 µs a bar).
    """
    first = rows[0]
    _, _, times, *values, _ = zip(*rows, strict=True)
    seconds = [int(time.timestamp()) for time in times]
    fields = dict(zip(BAR_COLUMNS, (seconds, *values), strict=True))
    messages = []
    for start in range(0, len(rows), MAX_BARS_PER_MESSAGE):
        part = slice(start, start + MAX_BARS_PER_MESSAGE)
        columns: dict[str, Any] = {name: column[part] for name, column in fields.items()}
        columns["indicators"] = None if indicators is None else _sliced(indicators, part)
        text = orjson.dumps(columns, option=orjson.OPT_SERIALIZE_NUMPY).decode()
        messages.append(batch_message(first.instrument_id, first.timeframe, columns=text))
    return messages


def _sliced(indicators: dict[str, dict[str, Any]], part: slice) -> dict[str, dict[str, Any]]:
    return {key: {output: series[part] for output, series in outputs.items()} for key, outputs in indicators.items()}


def batch_items(message: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The `{"time", "final", "text"}` items of a batch message (None for a single-bar message).
    A columnar message (`bar_column_messages`) is turned into them here, once: the items are kept on
    the message, which the process's hub hands to every local subscriber."""
    items: list[dict[str, Any]] | None = message.get("bars")
    if items is None and "columns" in message:
        items = message["bars"] = items_from_columns(message["instrument"], message["timeframe"], message["columns"])
    return items


def items_from_columns(instrument_id: int, timeframe: str, text: str) -> list[dict[str, Any]]:
    """The items `bar_batch_messages` makes of the same final bars: the same frame text, byte for byte."""
    columns = orjson.loads(text)
    indicators = columns["indicators"]
    per_bar: Iterable[dict[str, Any] | None]
    if indicators is None:
        per_bar = [None] * len(columns["time"])
    elif not indicators:
        per_bar = [{} for _ in columns["time"]]
    else:
        keys = list(indicators)
        per_key = [
            [dict(zip(outputs, at_bar, strict=True)) for at_bar in zip(*outputs.values(), strict=True)]
            for outputs in indicators.values()
        ]
        per_bar = (dict(zip(keys, at_bar, strict=True)) for at_bar in zip(*per_key, strict=True))
    items = []
    for *bar, values in zip(*(columns[name] for name in BAR_COLUMNS), per_bar, strict=True):
        payload = dict(zip(BAR_COLUMNS, bar, strict=True))
        payload["final"] = True
        items.append(bar_item(instrument_id, timeframe, payload, values))
    return items


async def send_bar_messages(layer: Any, messages: Sequence[dict[str, Any]]) -> None:
    """Send batch messages to their groups, each group's in order (`market.group_batch`)."""
    await group_batch.send_to_groups(layer, [(message["group"], message) for message in messages])


async def apublish_stored_bars(rows: Sequence[BarRow], listened: set[str] | None = None) -> int:
    """`publish_bars` from async code (the collector, after its store committed); returns how many
    bars were broadcast. Only the bars of `listened` groups (None: all) are broadcast, since a
    broadcast nobody receives still costs channels_redis two round trips; the alert rules judge them
    all. The indicator values and the encoding run in the database thread, the sends in the loop:
    the thread never waits for Redis."""
    layer = get_channel_layer()
    heard = list(rows) if listened is None else _in_groups(rows, listened)
    messages = await sync_to_async(_prepare_announcement)(rows, heard if layer is not None else [])
    if layer is not None and messages:
        await send_bar_messages(layer, messages)
    return len(heard) if layer is not None else 0


def _in_groups(rows: Sequence[BarRow], groups: set[str]) -> list[BarRow]:
    """The rows whose series' group is one of `groups` (a group name made per series, not per bar)."""
    series = {(row.instrument_id, row.timeframe) for row in rows}
    wanted = {key for key in series if bars_group(*key) in groups}
    if len(wanted) == len(series):
        return list(rows)
    return [row for row in rows if (row.instrument_id, row.timeframe) in wanted]


def _prepare_announcement(rows: Sequence[BarRow], heard: Sequence[BarRow]) -> list[dict[str, Any]]:
    _schedule_alert_evaluation(rows)
    return prepare_bar_messages(heard) if heard else []


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
        message = bar_message(row)
        await layer.group_send(message["group"], message)


def topic_message(group: str, frame: dict[str, Any]) -> dict[str, Any]:
    """A broadcast to a topic group (collectors, arbitrage): the frame encoded once."""
    return {"type": "topic.update", "group": group, "text": encode_frame(frame)}


async def apublish_collector_state(snapshot: HealthSnapshot, previous_state: str | None) -> None:
    """A collector changed state (started, streaming, reconnecting, idle, stopped...): tell the clients
    subscribed to the `collectors` channel."""
    layer = get_channel_layer()
    if layer is None:
        return
    frame = {
        "type": "collector",
        "name": snapshot.name,
        "source": snapshot.source,
        "state": snapshot.state,
        "previous_state": previous_state,
        "breaker_state": snapshot.breaker_state,
        "last_error": snapshot.last_error[:500],
        "at": snapshot.updated_at.isoformat().replace("+00:00", "Z"),
    }
    await layer.group_send(COLLECTORS_GROUP, topic_message(COLLECTORS_GROUP, frame))


def publish_arbitrage_opportunity(opportunity: dict[str, Any]) -> None:
    """An arbitrage opportunity, to the clients subscribed to the `arbitrage` channel. The shape is
    documented in docs/websocket.md: `{"event", "id", "symbol", "buy": {"exchange", "instrument",
    "price"}, "sell": {...}, "spread_bps", "gross_spread_bps", "max_spread_bps", "at"}`; the caller
    builds it (market.arbitrage_services)."""
    publish_arbitrage_opportunities([opportunity])


def publish_arbitrage_opportunities(opportunities: Sequence[dict[str, Any]]) -> None:
    """Several opportunities, in order, in one trip into the event loop (on Redis, a few round trips
    for all of them instead of four each): a detection can open or update a hundred at once."""
    layer = get_channel_layer()
    if layer is not None and opportunities:
        messages = [
            (ARBITRAGE_GROUP, topic_message(ARBITRAGE_GROUP, {"type": "arbitrage", **opportunity}))
            for opportunity in opportunities
        ]
        async_to_sync(group_batch.send_to_groups)(layer, messages)


async def aschedule_intrabar_alerts(rows: Sequence[BarRow]) -> None:
    """Partial bars just published, to the alert rules judged intrabar (from async code: the
    collector). Cheap when no rule watches these feeds; a failure is logged and never stops the
    collector."""
    try:
        from alerts.services import intrabar  # imported here: alerts builds on market

        await intrabar.on_partial_bars(rows)
    except Exception:
        log.exception("could not schedule intrabar alert evaluation for %d partial bars", len(rows))


_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)


def utc_from_ms(time_ms: int) -> datetime:
    # Integer arithmetic: exact at any date (fromtimestamp(ms / 1000) goes through a float) and
    # faster, which counts at a bar per few trades in a replay.
    return _UNIX_EPOCH + time_ms * _MILLISECOND

"""market.services: what reaches the Channels groups after a write, and who is asked to listen."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from market import services
from market.barstore import BarRow
from market.groups import bars_group
from market.services import listened_groups, publish_bars, publish_bars_to_listeners, store_bars
from market.tests.broadcasts import bar_frames

pytestmark = pytest.mark.django_db(transaction=True)  # publishing waits for the commit

START = datetime(2024, 3, 1, tzinfo=UTC)


def minute_bars(instrument_id: int, count: int) -> list[BarRow]:
    return [
        BarRow(instrument_id, "1m", START + timedelta(minutes=n), 10 + n, 11 + n, 9 + n, 10.5 + n, 5, 3, None, True)
        for n in range(count)
    ]


def published_after(instrument_id: int, write: Any) -> list[dict[str, Any]]:
    """The bar frames a group member receives for what `write()` stores."""
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(bars_group(instrument_id, "1m"), channel)
    write()

    async def drain() -> list[dict[str, Any]]:
        received = []
        while True:
            try:
                received.append(await asyncio.wait_for(layer.receive(channel), 0.5))
            except TimeoutError:
                return bar_frames(received)

    return async_to_sync(drain)()


async def nothing_more(layer: Any, channel: str) -> bool:
    try:
        await asyncio.wait_for(layer.receive(channel), 0.3)
    except TimeoutError:
        return True
    return False


def test_new_bars_are_published_once_each(instrument):
    bars = minute_bars(instrument.pk, 3)

    messages = published_after(instrument.pk, lambda: store_bars(bars))

    assert [message["bar"]["close"] for message in messages] == [10.5, 11.5, 12.5]


def test_storing_the_same_bars_again_publishes_nothing(instrument):
    bars = minute_bars(instrument.pk, 3)
    store_bars(bars)

    assert published_after(instrument.pk, lambda: store_bars(bars)) == []


def test_only_the_corrected_bar_is_published_again(instrument):
    bars = minute_bars(instrument.pk, 3)
    store_bars(bars)
    corrected = bars[1]._replace(close=11.9)

    messages = published_after(instrument.pk, lambda: store_bars([bars[0], corrected, bars[2]]))

    assert [message["bar"]["close"] for message in messages] == [11.9]


def test_the_layer_names_only_the_groups_somebody_listens_to(instrument):
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    watched, unwatched = bars_group(instrument.pk, "1h"), bars_group(instrument.pk, "4h")
    async_to_sync(layer.group_add)(watched, channel)

    assert async_to_sync(listened_groups)({watched, unwatched}) == {watched}

    async_to_sync(layer.group_discard)(watched, channel)
    assert async_to_sync(listened_groups)({watched, unwatched}) == set()


def test_publishing_to_listeners_broadcasts_only_the_watched_feeds(instrument):
    rows = [
        BarRow(instrument.pk, "1h", START, 10, 11, 9, 10.5, 5, 3, None, False),
        BarRow(instrument.pk, "4h", START, 10, 11, 9, 10.5, 5, 3, None, False),
    ]
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(bars_group(instrument.pk, "1h"), channel)

    broadcast = publish_bars_to_listeners(rows)

    received = async_to_sync(asyncio.wait_for)(layer.receive(channel), 2)
    assert broadcast == 1
    assert [(frame["timeframe"], frame["bar"]["close"]) for frame in bar_frames([received])] == [("1h", 10.5)]


def test_bars_of_many_groups_reach_every_member_in_the_order_published(instrument):
    layer = get_channel_layer()
    everything, hourly_only = async_to_sync(layer.new_channel)(), async_to_sync(layer.new_channel)()
    for timeframe in ("1h", "4h"):
        async_to_sync(layer.group_add)(bars_group(instrument.pk, timeframe), everything)
    async_to_sync(layer.group_add)(bars_group(instrument.pk, "1h"), hourly_only)
    rows = [
        BarRow(instrument.pk, timeframe, START + timedelta(hours=4 * n), 10, 11, 9, 10 + n, 5, 3, None, False)
        for n in range(3)
        for timeframe in ("1h", "4h")
    ]

    publish_bars(rows)

    async def receive(channel: str, count: int) -> list[tuple[str, float]]:
        """The bars of `count` messages (one per series: bars of a series travel together)."""
        messages = [await asyncio.wait_for(layer.receive(channel), 2) for _ in range(count)]
        return [(frame["timeframe"], frame["bar"]["close"]) for frame in bar_frames(messages)]

    everything_got = async_to_sync(receive)(everything, 2)
    assert sorted(everything_got) == sorted((row.timeframe, row.close) for row in rows)
    for timeframe in ("1h", "4h"):
        in_series = [close for frame_timeframe, close in everything_got if frame_timeframe == timeframe]
        assert in_series == [row.close for row in rows if row.timeframe == timeframe]
    assert async_to_sync(receive)(hourly_only, 1) == [("1h", 10), ("1h", 11), ("1h", 12)]


def test_a_write_of_many_bars_reaches_a_member_as_one_message_per_series_in_order(instrument):
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(bars_group(instrument.pk, "1m"), channel)
    five_minute = [row._replace(timeframe="5m") for row in minute_bars(instrument.pk, 2)]

    # When one write stores 4 bars of the 1m series and 2 of the 5m one
    store_bars(minute_bars(instrument.pk, 4) + five_minute)

    # Then the member of the 1m group gets one message with its 4 bars, oldest first, and nothing else
    message = async_to_sync(layer.receive)(channel)
    assert (message["type"], message["instrument"], message["timeframe"]) == ("bars.update", instrument.pk, "1m")
    assert [(item["final"], item["time"]) for item in message["bars"]] == [
        (True, int((START + timedelta(minutes=n)).timestamp())) for n in range(4)
    ]
    assert [frame["bar"]["close"] for frame in bar_frames([message])] == [10.5, 11.5, 12.5, 13.5]
    assert async_to_sync(nothing_more)(layer, channel)


def test_a_batch_larger_than_a_message_is_split_in_order(instrument, monkeypatch):
    monkeypatch.setattr(services, "MAX_BARS_PER_MESSAGE", 2)
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(bars_group(instrument.pk, "1m"), channel)

    store_bars(minute_bars(instrument.pk, 5))

    messages = [async_to_sync(layer.receive)(channel) for _ in range(3)]
    assert [len(message["bars"]) for message in messages] == [2, 2, 1]
    assert [frame["bar"]["close"] for frame in bar_frames(messages)] == [10.5, 11.5, 12.5, 13.5, 14.5]

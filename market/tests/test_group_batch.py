"""market.group_batch on channels-redis' pub/sub layer (CHANNEL_REDIS_LAYER=pubsub): who listens, and
sends to many groups in order. The core layer is covered through market.services (test_services)."""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest

from market import group_batch
from market.groups import bars_group

REDIS_URL = os.environ.get("REDIS_URL", "")
pytestmark = pytest.mark.skipif(not REDIS_URL, reason="needs REDIS_URL")


@pytest.fixture
async def layer():
    from channels_redis.pubsub import RedisPubSubChannelLayer

    layer = RedisPubSubChannelLayer(hosts=[REDIS_URL], prefix=f"test-{uuid.uuid4().hex}")
    yield layer
    await layer.flush()


async def test_only_groups_a_process_subscribed_to_are_listened_to(layer):
    channel = await layer.new_channel()
    watched, unwatched = bars_group(1, "1h"), bars_group(1, "4h")
    await layer.group_add(watched, channel)

    assert await group_batch.listened_groups(layer, {watched, unwatched}) == {watched}

    await layer.group_discard(watched, channel)
    assert await group_batch.listened_groups(layer, {watched, unwatched}) == set()


async def test_messages_to_many_groups_reach_each_member_in_the_order_sent(layer):
    hourly, four_hourly = await layer.new_channel(), await layer.new_channel()
    await layer.group_add(bars_group(1, "1h"), hourly)
    await layer.group_add(bars_group(1, "4h"), four_hourly)
    messages = [
        (bars_group(1, timeframe), {"type": "bars.update", "n": n}) for n in range(5) for timeframe in ("1h", "4h")
    ]
    messages.append((bars_group(2, "1h"), {"type": "bars.update", "n": 99}))  # nobody listens

    await group_batch.send_to_groups(layer, messages)

    for channel in (hourly, four_hourly):
        received = [await asyncio.wait_for(layer.receive(channel), 2) for _ in range(5)]
        assert [message["n"] for message in received] == [0, 1, 2, 3, 4]

"""Channel-layer group operations for many groups at once: who listens, and sending to them.

Why: channels_redis spends two round trips on a `group_send` to a group nobody is in and four on one
with members, one group after the other. A roll-up changes 5,000 bars a minute (five per active
instrument) and a collector catching up publishes thousands: sent one by one, that was a second of
round trips. Here "who listens" is one round trip per Redis connection, and the sends to every
watched group two more, whatever the number of groups.

Uses channels_redis 4.x's storage layout (pinned in requirements): group members in a sorted set per
group (`_group_key`), messages serialized by the layer per channel key (`_map_channel_keys_to_connection`,
`serialize`) into a sorted set per channel, with the layer's capacity and expiry.

The pub/sub layer (`CHANNEL_REDIS_LAYER=pubsub`) keeps no members in Redis: each process subscribes
to the Redis channel of every group it has members in (`<prefix>__group__<group>`). Who listens is
then `PUBSUB NUMSUB` of those channels, one command per shard, and the sends one pipeline of
PUBLISH per shard (in order: one connection). With any other layer, every group is listened to and
messages go through the layer's own `group_send`.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any

from channels.layers import InMemoryChannelLayer
from channels_redis.core import RedisChannelLayer
from channels_redis.pubsub import RedisPubSubChannelLayer

log = logging.getLogger(__name__)

# The (1-based) positions of the group keys with a member joined after ARGV[1]. One command with a
# short answer: a pipeline of one ZCOUNT per group costs redis-py a parsed reply each (5,000 groups:
# 100 ms of CPU), while nearly every answer is "nobody".
_LISTENED_SCRIPT = """
local found = {}
for i, key in ipairs(KEYS) do
    if redis.call('ZCOUNT', key, ARGV[1], '+inf') > 0 then found[#found + 1] = i end
end
return found
"""

# channels_redis's group_send script for messages of many groups at once. KEYS are channel keys (a
# key may come several times: a web server's hub channel is in every group it watches); ARGV the
# message for each, then the capacity of each, then now and the message expiry. Messages that expired
# unread are dropped first, as channels_redis does. Each message gets its own score, one microsecond
# after the one before, so that a channel receives them in the order given (one score for all would
# order them by their random serialized bytes).
_SEND_SCRIPT = """
local count = #KEYS
local now = tonumber(ARGV[2 * count + 1])
local expiry = ARGV[2 * count + 2]
local over_capacity = 0
for i = 1, count do
    redis.call('ZREMRANGEBYSCORE', KEYS[i], 0, now - tonumber(expiry))
    if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[count + i]) then
        redis.call('ZADD', KEYS[i], now + i * 0.000001, ARGV[i])
        redis.call('EXPIRE', KEYS[i], expiry)
    else
        over_capacity = over_capacity + 1
    end
end
return over_capacity
"""


async def listened_groups(layer: Any, groups: set[str]) -> set[str]:
    """The groups with at least one member (a subscribed client), asked of Redis in one round trip
    per Redis connection, or of the in-process layer; with any other layer, all of them.

    Safe to skip the others: bars are stored before this is asked, and a client that subscribes
    after it gets them in its snapshot. On any error it answers "all groups".
    """
    if layer is None or not groups:
        return groups
    try:
        if isinstance(layer, InMemoryChannelLayer):
            return {group for group in groups if layer.groups.get(group)}
        if isinstance(layer, RedisPubSubChannelLayer):
            return await _pubsub_listened_groups(layer, groups)
        if not isinstance(layer, RedisChannelLayer):
            return groups
        oldest = int(time.time()) - layer.group_expiry
        listened: set[str] = set()
        for index, names in _by_connection(layer, groups).items():
            keys = [layer._group_key(group) for group in names]
            found = await layer.connection(index).eval(_LISTENED_SCRIPT, len(keys), *keys, oldest)
            listened.update(names[position - 1] for position in found)
    except Exception:
        log.warning("could not ask the channel layer who listens; publishing to every group", exc_info=True)
        return groups
    return listened


async def send_to_groups(layer: Any, messages: list[tuple[str, dict[str, Any]]]) -> None:
    """`group_send` each (group, message), in order: on channels_redis in one pipelined read of the
    groups' members and one script per Redis connection, elsewhere one `group_send` after the other."""
    if isinstance(layer, RedisPubSubChannelLayer):
        await _pubsub_send(layer, messages)
        return
    if not isinstance(layer, RedisChannelLayer):
        for group, message in messages:
            await layer.group_send(group, message)
        return
    members = await _group_members(layer, {group for group, _ in messages})
    sends: dict[int, list[tuple[bytes, bytes, int]]] = defaultdict(list)
    for group, message in messages:
        if not members.get(group):
            continue
        connection_keys, key_messages, capacities = layer._map_channel_keys_to_connection(members[group], message)
        for index, keys in connection_keys.items():
            sends[index].extend((key, key_messages[key], capacities[key]) for key in keys)
    now = time.time()
    for index, batch in sends.items():
        keys = [key for key, _, _ in batch]
        args = [message for _, message, _ in batch] + [capacity for _, _, capacity in batch] + [now, layer.expiry]
        over_capacity = await layer.connection(index).eval(_SEND_SCRIPT, len(keys), *keys, *args)
        if over_capacity:
            log.info("%d of %d group messages not delivered: channel over capacity", over_capacity, len(keys))


async def _group_members(layer: RedisChannelLayer, groups: set[str]) -> dict[str, list[str]]:
    """Each group's member channels, members older than the group expiry dropped (as group_send does)."""
    oldest = int(time.time()) - layer.group_expiry
    members: dict[str, list[str]] = {}
    for index, names in _by_connection(layer, groups).items():
        pipe = layer.connection(index).pipeline(transaction=False)
        for group in names:
            key = layer._group_key(group)
            pipe.zremrangebyscore(key, min=0, max=oldest)
            pipe.zrange(key, 0, -1)
        replies = await pipe.execute()
        for position, group in enumerate(names):
            members[group] = [name.decode() for name in replies[2 * position + 1]]
    return members


def _by_connection(layer: RedisChannelLayer, groups: set[str]) -> dict[int, list[str]]:
    by_connection: dict[int, list[str]] = defaultdict(list)
    for group in groups:
        by_connection[layer.consistent_hash(group)].append(group)
    return by_connection


def _pubsub_route(layer: RedisPubSubChannelLayer, group: str) -> tuple[Any, str]:
    """The shard that carries a group's Redis channel, and that channel, as the layer's group_send picks them."""
    loop_layer = layer._get_layer()
    channel = loop_layer._get_group_channel_name(group)
    return loop_layer._get_shard(channel), channel


async def _pubsub_listened_groups(layer: RedisPubSubChannelLayer, groups: set[str]) -> set[str]:
    by_shard: dict[Any, list[tuple[str, str]]] = defaultdict(list)
    for group in groups:
        shard, channel = _pubsub_route(layer, group)
        by_shard[shard].append((group, channel))
    listened: set[str] = set()
    for shard, pairs in by_shard.items():
        shard._ensure_redis()
        counts = await shard._redis.pubsub_numsub(*(channel for _, channel in pairs))
        subscribed = {name.decode() if isinstance(name, bytes) else name for name, count in counts if count}
        listened.update(group for group, channel in pairs if channel in subscribed)
    return listened


async def _pubsub_send(layer: RedisPubSubChannelLayer, messages: list[tuple[str, dict[str, Any]]]) -> None:
    by_shard: dict[Any, list[tuple[str, bytes]]] = defaultdict(list)
    for group, message in messages:
        shard, channel = _pubsub_route(layer, group)
        by_shard[shard].append((channel, layer.serialize(message)))
    for shard, sends in by_shard.items():
        shard._ensure_redis()
        pipe = shard._redis.pipeline(transaction=False)
        for channel, payload in sends:
            pipe.publish(channel, payload)
        await pipe.execute()

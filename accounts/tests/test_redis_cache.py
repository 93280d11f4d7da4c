"""The leaner Redis cache backend behaves as Django's (with REDIS_URL set; skipped otherwise)."""

from __future__ import annotations

import os
import uuid

import pytest

from cryptostock.redis_cache import RedisCache

REDIS_URL = os.environ.get("REDIS_URL", "")
pytestmark = pytest.mark.skipif(not REDIS_URL, reason="needs REDIS_URL")


@pytest.fixture
def cache() -> RedisCache:
    return RedisCache(REDIS_URL, {"KEY_PREFIX": f"test-{uuid.uuid4().hex}"})


def test_it_reuses_one_client_per_pool(cache):
    assert cache._cache.get_client() is cache._cache.get_client(write=True)


def test_cache_objects_of_one_server_share_one_connection_pool(cache):
    """Django builds a cache object per thread and per async context (so per ASGI request): they
    must not each open their own connections to Redis."""
    other = RedisCache(REDIS_URL, {"KEY_PREFIX": "another-prefix"})
    elsewhere = RedisCache(REDIS_URL.rstrip("0123456789") + "15", {})

    assert other._cache.get_client() is cache._cache.get_client()
    assert other._cache._get_connection_pool(False) is cache._cache._get_connection_pool(False)  # type: ignore[attr-defined]
    assert elsewhere._cache.get_client() is not cache._cache.get_client()
    cache.set("shared", 1, 60)
    connections = cache._cache._get_connection_pool(False)._created_connections
    for _ in range(5):
        RedisCache(REDIS_URL, {"KEY_PREFIX": cache.key_prefix}).get("shared")
    assert cache._cache._get_connection_pool(False)._created_connections == connections


def test_incr_counts_an_existing_key_in_one_step_and_refuses_a_missing_one(cache):
    assert cache.add("hits", 1, 60)
    assert cache.incr("hits") == 2
    assert cache.incr("hits", 5) == 7
    assert cache.get("hits") == 7
    with pytest.raises(ValueError, match="not found"):
        cache.incr("missing")


def test_count_starts_an_expiring_counter_and_adds_to_it_as_add_then_incr_would(cache):
    assert [cache.count("requests", 60) for _ in range(3)] == [1, 2, 3]

    assert cache.get("requests") == 3
    assert cache.incr("requests") == 4
    assert 55 <= cache._cache.get_client().ttl(cache.make_and_validate_key("requests")) <= 60
    cache.add("counted", 1, 60)
    assert cache.count("counted", 60) == 2


def test_it_stores_and_reads_values_like_djangos(cache):
    cache.set("body", (123, b"{}"), 60)
    assert cache.get_many(["body", "other"]) == {"body": (123, b"{}")}
    cache.delete("body")
    assert cache.get("body") is None

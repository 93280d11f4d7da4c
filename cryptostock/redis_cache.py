"""Django's Redis cache backend, minus three costs paid on every API request.

- Django keeps a cache object per thread and per async context, so under ASGI every request builds
  a new one, with a new connection pool: every request opened new TCP connections to Redis (connect
  plus the HELLO/health-check round trips, about a tenth of a cached bars request's time under
  daphne). The pools here are the process's, shared by every cache object with the same server and
  options (redis-py pools are thread-safe and reset themselves in a forked child).
- Django's client builds a new `redis.Redis` object (with its ~200 response callbacks) for every
  cache operation; this one builds one per connection pool and reuses it (redis.Redis is
  thread-safe: every command takes a connection from the pool).
- `incr` is one round trip (a Lua script) instead of EXISTS then INCRBY, and `count` (start a
  counter or add one to it, for the API's rate limits: cryptostock.api_ratelimit) one instead of
  django-ratelimit's `add` then `incr`.

Same behaviour otherwise: CACHES = {"default": {"BACKEND": "cryptostock.redis_cache.RedisCache", ...}}.
"""

from __future__ import annotations

import threading
from typing import Any

from django.core.cache.backends import redis as django_redis

# INCRBY only an existing key: Django's incr raises ValueError for a missing one.
_INCR_EXISTING = "if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('INCRBY', KEYS[1], ARGV[1]) end"
# A new counter at 1 that expires, or an existing one plus 1: `add(key, 1, timeout)`, else `incr(key)`.
_COUNT = "if redis.call('SET', KEYS[1], 1, 'NX', 'EX', ARGV[1]) then return 1 end return redis.call('INCR', KEYS[1])"


# (pool class, server URL, pool options) -> (pool, client), for the whole process.
_SHARED: dict[tuple[Any, str, str], tuple[Any, Any]] = {}
_SHARED_LOCK = threading.Lock()


def _shared_pool(pool_class: Any, server: str, options: dict[str, Any], client_class: Any) -> tuple[Any, Any]:
    key = (pool_class, server, repr(sorted(options.items())))
    found = _SHARED.get(key)
    if found is None:
        with _SHARED_LOCK:
            found = _SHARED.get(key)
            if found is None:
                pool = pool_class.from_url(server, **options)
                found = _SHARED[key] = (pool, client_class(connection_pool=pool))
    return found


class RedisCacheClient(django_redis.RedisCacheClient):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Server index -> the process's (pool, client): looked up once per cache object, not per command.
        self._known: dict[int, tuple[Any, Any]] = {}

    def _shared(self, write: bool) -> tuple[Any, Any]:
        index = self._get_connection_pool_index(write)  # type: ignore[attr-defined]
        found = self._known.get(index)
        if found is None:
            found = self._known[index] = _shared_pool(
                self._pool_class,  # type: ignore[attr-defined]
                self._servers[index],  # type: ignore[attr-defined]
                self._pool_options,  # type: ignore[attr-defined]
                self._client,  # type: ignore[attr-defined]
            )
        return found

    def _get_connection_pool(self, write: bool) -> Any:
        return self._shared(write)[0]

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        return self._shared(write)[1]

    def incr(self, key: Any, delta: int) -> int:
        value = self.get_client(key, write=True).eval(_INCR_EXISTING, 1, key, delta)
        if value is None:
            raise ValueError(f"Key '{key}' not found.")
        return int(value)

    def count(self, key: Any, timeout: int) -> int:
        return int(self.get_client(key, write=True).eval(_COUNT, 1, key, timeout))


class RedisCache(django_redis.RedisCache):
    def __init__(self, server: Any, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = RedisCacheClient

    def count(self, key: str, timeout: int, version: int | None = None) -> int:
        """Add one to the counter at `key`, starting it at 1 (expiring after `timeout` seconds) if
        there is none; the new count. The value is the integer `add` and `incr` would store."""
        client: Any = self._cache  # this module's RedisCacheClient (self._class)
        return int(client.count(self.make_and_validate_key(key, version=version), timeout))

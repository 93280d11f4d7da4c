"""cryptostock.settings with Django's psycopg connection pool instead of persistent connections, and
the leaner Redis cache client (cryptostock.redis_cache).

Under an ASGI server (daphne, uvicorn) Django runs each request's sync code in a thread of its own,
so persistent connections (CONN_MAX_AGE > 0) pile up, one per thread, until PostgreSQL refuses new
clients; Django's documentation says to turn them off under ASGI and pool instead. bench_api runs
the product both ways. Needs psycopg-pool.
"""

from cryptostock.settings import *  # noqa: F403
from cryptostock.settings import DATABASES

DATABASES["default"]["CONN_MAX_AGE"] = 0
DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {"min_size": 2, "max_size": 8, "timeout": 10}

if CACHES["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache":  # noqa: F405
    CACHES["default"]["BACKEND"] = "cryptostock.redis_cache.RedisCache"  # noqa: F405

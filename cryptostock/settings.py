"""Settings for cryptostock, read from the environment only.

Every value has a safe default so that a fresh checkout runs embedded (SQLite, in-process channel
layer, local-memory cache, eager Celery). Production sets DATABASE_URL and REDIS_URL. `.env.example`
lists every variable this module reads.
"""

from __future__ import annotations

import ipaddress
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
import django_stubs_ext
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP
from pythonjsonlogger.core import RESERVED_ATTRS as RESERVED_LOG_ATTRS

from backups.copying import copy_command_problem
from backups.rotation import KeepPolicy

# Lets generic classes (ModelAdmin[Model], QuerySet[Model]) be subscripted at run time for typing.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def envbool(name: str, default: bool) -> bool:
    """A boolean variable; a value that is neither clearly true nor false is an error, not a guess."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use one of: 1/0, true/false, yes/no, on/off)")


def envint(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None


def envfloat(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number") from None


def envlist(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def envnetworks(name: str, default: str) -> list[str]:
    """Comma-separated IP networks (`10.0.0.0/8`, `::1/128`, a bare address); a bad one is an error."""
    networks = envlist(name, default)
    for network in networks:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ImproperlyConfigured(f"{name}: {network!r} is not an IP network (use e.g. 10.0.0.0/8)") from None
    return networks


def envrate(name: str, default: str) -> str:
    """A rate limit such as `100/m` (count per s, m, h or d; `5/10m` is 5 per ten minutes)."""
    raw = os.environ.get(name, "").strip() or default
    if not re.fullmatch(r"[1-9][0-9]*/(?:[1-9][0-9]*)?[smhd]", raw):
        raise ImproperlyConfigured(f"{name}={raw!r} is not a rate (use e.g. 100/m, 10/s, 1000/h, 5/10m)")
    return raw


def envsecret(name: str, default: str = "") -> str:
    """A secret, from the variable or from the file that `<name>_FILE` names (Docker and Kubernetes
    secrets are mounted as files, and a file keeps the value out of the process's environment, which
    `ps e` and crash reporters show). The file's trailing newline is dropped; setting both is an error."""
    path = os.environ.get(f"{name}_FILE")
    if not path:
        return os.environ.get(name, default)
    if os.environ.get(name):
        raise ImproperlyConfigured(f"{name} and {name}_FILE are both set; set one")
    try:
        return Path(path).read_text().rstrip("\r\n")
    except OSError as exc:
        raise ImproperlyConfigured(f"{name}_FILE={path!r} cannot be read: {exc.strerror}") from None


DEBUG = envbool("DEBUG", False)

SECRET_KEY = envsecret("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = "insecure-development-key-only-used-with-DEBUG-on"

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "daphne",
    "cryptostock.apps.CryptostockAdminConfig",  # django.contrib.admin with the bar pages (cryptostock/admin_site.py)
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "django_prometheus",
    "django_celery_beat",
    "django_celery_results",
    "auditlog",
    "market",
    "indicators",
    "alerts",
    "accounts",
    "exports",
    "backtest",
    "backups",
]

MIDDLEWARE = [
    # First: every later middleware's log lines, and the response, carry the request id.
    "cryptostock.request_id.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    # Before anything that may answer on its own (whitenoise, CommonMiddleware), so those answers
    # carry CORS headers too.
    "corsheaders.middleware.CorsMiddleware",
    # Sees every response under /api/, including Django's own 404/405/500 pages, and gives errors
    # the API's JSON shape.
    "cryptostock.api_errors.ApiErrorMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Who made a request, for the audit trail's entries written while it runs (accounts.audit).
    "accounts.audit.AuditContextMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "cryptostock.urls"
WSGI_APPLICATION = "cryptostock.wsgi.application"
ASGI_APPLICATION = "cryptostock.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.csp",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
# SQLite by default (a file under var/), PostgreSQL by DATABASE_URL=postgres://...
VAR_DIR = Path(os.environ.get("VAR_DIR", BASE_DIR / "var"))
DATABASE_URL = envsecret("DATABASE_URL")
if not DATABASE_URL:
    # The embedded default must work from a fresh checkout, where var/ does not exist yet.
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASE_URL = f"sqlite:///{VAR_DIR / 'cryptostock.sqlite3'}"
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=envint("DB_CONN_MAX_AGE", 0))}
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web server read while a collector writes; IMMEDIATE avoids upgrade deadlocks.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
# PostgreSQL: Django's psycopg connection pool, DB_POOL_SIZE connections at most per process (0: no
# pool, a new connection per request unless DB_CONN_MAX_AGE). Under an ASGI server every request runs
# in a thread of its own, so persistent connections pile up one per thread; a pool hands a few
# connections from request to request instead of opening one (a PostgreSQL process) for each.
# Set for the web server (docker-compose.yml); off elsewhere: Celery's prefork workers would inherit
# the parent's pooled connections.
DB_POOL_SIZE = envint("DB_POOL_SIZE", 0)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and DB_POOL_SIZE > 0:
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # the pool keeps the connections; Django requires 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": min(2, DB_POOL_SIZE),
        "max_size": DB_POOL_SIZE,
        "timeout": envint("DB_POOL_TIMEOUT", 10),
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: cache, channel layer, Celery broker ------------------------------------------------
REDIS_URL = envsecret("REDIS_URL")

# The channel layer does a blocking read of `brpop_timeout` (5 s) seconds; redis-py's own default
# socket_timeout is also 5 s, so idle consumers would die with "Timeout reading". The socket timeout
# must exceed the blocking read, and the pool must allow more than redis-py's 100 connections.
CHANNEL_REDIS_SOCKET_TIMEOUT = envfloat("CHANNEL_REDIS_SOCKET_TIMEOUT", 30.0)
CHANNEL_REDIS_MAX_CONNECTIONS = envint("CHANNEL_REDIS_MAX_CONNECTIONS", 1000)
# Which channels-redis layer: "core" (lists per channel; a message waits for a consumer for a while)
# or "pubsub" (Redis pub/sub: a broadcast reaches each process in one push, with no round trip per
# message; a process that is reconnecting misses what was sent meanwhile). bench/README.md compares.
CHANNEL_REDIS_LAYER = os.environ.get("CHANNEL_REDIS_LAYER", "core")
CHANNEL_REDIS_BACKENDS = {
    "core": "channels_redis.core.RedisChannelLayer",
    "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
}
if CHANNEL_REDIS_LAYER not in CHANNEL_REDIS_BACKENDS:
    raise ImproperlyConfigured(f"CHANNEL_REDIS_LAYER must be one of {', '.join(CHANNEL_REDIS_BACKENDS)}")

if REDIS_URL:
    CACHES: dict[str, Any] = {
        # Django's Redis backend minus its per-operation client construction (cryptostock/redis_cache.py).
        "default": {"BACKEND": "cryptostock.redis_cache.RedisCache", "LOCATION": REDIS_URL}
    }
    CHANNEL_LAYERS: dict[str, Any] = {
        "default": {
            "BACKEND": CHANNEL_REDIS_BACKENDS[CHANNEL_REDIS_LAYER],
            "CONFIG": {
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "socket_timeout": CHANNEL_REDIS_SOCKET_TIMEOUT,
                        "max_connections": CHANNEL_REDIS_MAX_CONNECTIONS,
                    }
                ],
                "prefix": os.environ.get("CHANNEL_PREFIX", "cryptostock"),
                "capacity": envint("CHANNEL_CAPACITY", 1000),
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- Celery ------------------------------------------------------------------------------------
CELERY_BROKER_URL = envsecret("CELERY_BROKER_URL", REDIS_URL or "memory://")
CELERY_RESULT_BACKEND = "django-db"
CELERY_TASK_ALWAYS_EAGER = envbool("CELERY_TASK_ALWAYS_EAGER", not REDIS_URL)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"

# --- I18N / time -------------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static files (served by the app itself through whitenoise, cache-busted) ------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# --- Users and passwords -------------------------------------------------------------------------
# Argon2 hashes new and changed passwords; the others only verify older hashes, which Django
# re-hashes with Argon2 at the next successful login.
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": envint("PASSWORD_MIN_LENGTH", 10)},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# A file missing from the manifest (or no collectstatic yet, as in tests) falls back to its plain
# name instead of failing the whole page.
WHITENOISE_MANIFEST_STRICT = False

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "chart"
LOGOUT_REDIRECT_URL = "login"
# Where the System page links to Flower, the Celery task console (empty: no link). It has no login
# of its own, so docker-compose publishes it on localhost only.
FLOWER_URL = os.environ.get("FLOWER_URL", "http://127.0.0.1:5555")

# --- HTTPS and security headers ------------------------------------------------------------------
# TLS=1 when browsers reach the site over HTTPS (directly or through a TLS-terminating proxy):
# plain HTTP is redirected, cookies are secure-only and HSTS is sent. The health probes and /metrics
# stay reachable over plain HTTP, which is how orchestrators and Prometheus call them from inside
# the network (/metrics answers only METRICS_ALLOWED_NETWORKS).
TLS = envbool("TLS", False)
SECURE_SSL_REDIRECT = TLS
SECURE_REDIRECT_EXEMPT = [r"^health$", r"^ready$", r"^metrics$"]
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = TLS
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 31_536_000) if TLS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", True)
if envbool("TRUST_X_FORWARDED_PROTO", False):
    # Only behind a proxy that always sets X-Forwarded-Proto itself; otherwise a client could fake it.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Scripts only from our own origin or carrying the per-request nonce (`{{ csp_nonce }}` in templates);
# inline styles stay allowed because the error pages and the API docs UIs use them, and an injected
# style cannot run code. 'self' in connect-src covers the same-origin WebSocket (CSP level 3).
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF, CSP.UNSAFE_INLINE],
    "img-src": [CSP.SELF, "data:"],
    "font-src": [CSP.SELF],
    "connect-src": [CSP.SELF],
    "worker-src": [CSP.SELF, "blob:"],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}

# --- API ---------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "cryptostock.api_schema.AutoSchema",
    "DEFAULT_VERSIONING_CLASS": "rest_framework.versioning.URLPathVersioning",
    "DEFAULT_VERSION": "v1",
    "ALLOWED_VERSIONS": ["v1"],
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # JWT first: its WWW-Authenticate header makes "not logged in" a 401 instead of a 403.
        "accounts.authentication.RememberingJWTAuthentication",
        # The web UI's session cookie; DRF enforces CSRF on session-authenticated writes.
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Closed unless a view says otherwise: every endpoint names who may use it (accounts.permissions).
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_CLASSES": ["cryptostock.api_ratelimit.RateLimitThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["cryptostock.api_json.ORJSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["cryptostock.api_json.ORJSONParser"],
    "DEFAULT_PAGINATION_CLASS": "cryptostock.api_pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    "EXCEPTION_HANDLER": "cryptostock.api_errors.exception_handler",
}
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=envint("JWT_ACCESS_MINUTES", 60)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=envint("JWT_REFRESH_DAYS", 7)),
    # Each refresh returns a new refresh token and blacklists the one used, so a stolen refresh
    # token works once at most; logout blacklists the current one.
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    # A password change ends every token issued before it.
    "CHECK_REVOKE_TOKEN": True,
    "UPDATE_LAST_LOGIN": False,
}
# Market data (exchanges, instruments, bars) readable without logging in. Off in production: reads
# need the viewer role. On by default in the embedded demo (DEBUG=1), whose chart page is public.
PUBLIC_MARKET_DATA = envbool("PUBLIC_MARKET_DATA", DEBUG)
# The live WebSocket (/ws/v1/market/, docs/websocket.md): limits per connection. Anonymous connections
# are accepted only when PUBLIC_MARKET_DATA is on.
WS_MAX_SUBSCRIPTIONS = envint("WS_MAX_SUBSCRIPTIONS", 50)  # bar series and channels together
WS_MAX_MESSAGE_BYTES = envint("WS_MAX_MESSAGE_BYTES", 4096)  # one inbound frame
WS_MESSAGES_PER_SECOND = envfloat("WS_MESSAGES_PER_SECOND", 10.0)  # inbound, on average...
WS_MESSAGE_BURST = envint("WS_MESSAGE_BURST", 30)  # ...with bursts of this many (a page subscribing)
# Refused (over-rate) messages in a row after which the connection is closed with 4429.
WS_CLOSE_AFTER_REFUSED = envint("WS_CLOSE_AFTER_REFUSED", 100)
# Frames waiting for a client that does not read (final bars and other undroppable frames; partial
# bars are coalesced) after which the connection is closed with 4408: it reconnects and resyncs.
WS_MAX_QUEUED_FRAMES = envint("WS_MAX_QUEUED_FRAMES", 10_000)
# The OpenAPI schema, Swagger UI and ReDoc readable without logging in.
API_DOCS_PUBLIC = envbool("API_DOCS_PUBLIC", True)
# Seconds each process remembers a user's permissions (saves two queries per API request); a role
# taken away applies within this time. 0: read them on every request.
CAPABILITY_CACHE_SECONDS = envint("CAPABILITY_CACHE_SECONDS", 10)
# The audit trail (accounts.audit, docs/security.md): days its sign-in events and change records
# are kept; the nightly retention task deletes older ones. 0 keeps them forever.
AUDIT_RETENTION_DAYS = envint("AUDIT_RETENTION_DAYS", 365)
# django-auditlog: changes as JSON values, not as their text.
AUDITLOG_STORE_JSON_CHANGES = True
# ...and each change record's correlation id is the request id (cryptostock.request_id).
AUDITLOG_CID_GETTER = "cryptostock.request_id.current_request_id"
# Seconds a bars response may be served from the cache (0: off). Every write of bars drops the cached
# responses of its instruments (market.services.bars_changed); the time only bounds memory. On by
# default with Redis only: the local-memory cache is per process, and a collector or import in
# another process could not drop the web server's copies.
API_BARS_CACHE_SECONDS = envint("API_BARS_CACHE_SECONDS", 300 if REDIS_URL else 0)
SPECTACULAR_SETTINGS = {
    "TITLE": "cryptostock API",
    "DESCRIPTION": (
        "Market data for crypto and stocks: instruments, OHLCV bars and more. Authenticate with a JWT "
        "(`POST /api/v1/auth/token/`, then `Authorization: Bearer <access>`) or the web UI's session. "
        'Every error has the shape `{"error": {"code", "message", "fields"}}`; see docs/api.md.'
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": [
        "rest_framework.permissions.AllowAny" if API_DOCS_PUBLIC else "rest_framework.permissions.IsAuthenticated"
    ],
    # Tags (Swagger UI sections) from the first path segment after the version: bars, instruments, ...
    "SCHEMA_PATH_PREFIX": r"/api/v[0-9]+",
    # Separate request and response components, so read-only fields are never asked for.
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI and ReDoc from our own static files: no CDN, and allowed by the CSP.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Backtests and exports share their `status` choices (pending, running, done, failed), which
    # alert deliveries' `status` does not: a name of their own, not a numbered one.
    "ENUM_NAME_OVERRIDES": {"JobStatusEnum": "backtest.models.Status"},
}

# --- Rate limits (django-ratelimit; counters in the default cache, which is Redis in production) ---
RATELIMIT_ENABLE = envbool("RATELIMIT_ENABLE", True)
RATELIMIT_USE_CACHE = "default"
# Behind a reverse proxy every client has the proxy's address: name the request header (as a META
# key, e.g. HTTP_X_REAL_IP) that the proxy sets to the client's single address.
RATELIMIT_IP_META_KEY = os.environ.get("RATELIMIT_IP_META_KEY") or None
# Requests per endpoint group: "user" per logged-in user, "anon" per client IP. A view joins a group
# with `ratelimit_group = "<name>"`; a view in no listed group counts in "default".
API_RATE_LIMITS = {
    "default": {"user": envrate("API_RATE_USER", "100/m"), "anon": envrate("API_RATE_ANON", "30/m")},
    # Login and token endpoints, against password guessing: per client IP whoever asks.
    "auth": {"user": envrate("API_RATE_AUTH", "10/m"), "anon": envrate("API_RATE_AUTH", "10/m")},
}

# --- CORS: web apps on these origins may call the API (with tokens; cookies are not sent) --------
CORS_ALLOWED_ORIGINS = envlist("CORS_ALLOWED_ORIGINS")
CORS_URLS_REGEX = r"^/api/.*$"
CORS_ALLOW_CREDENTIALS = False
# What a browser app on another origin may read: when to retry, and the id to quote in a report.
CORS_EXPOSE_HEADERS = ["Retry-After", "X-Request-ID"]

# --- Product settings --------------------------------------------------------------------------
SAMPLE_DATA_DIR = Path(os.environ.get("SAMPLE_DATA_DIR", BASE_DIR / "sample_data"))
# How many bars one bars request may return at most.
API_MAX_BARS = envint("API_MAX_BARS", 5000)
# Replay speed for `collect --source replay` when not given on the command line (1 = real time).
REPLAY_SPEED = envfloat("REPLAY_SPEED", 60.0)
# Partial-bar updates per instrument per second at most (final bars are never throttled).
PARTIAL_BAR_MAX_PER_SECOND = envfloat("PARTIAL_BAR_MAX_PER_SECOND", 4.0)
# Final bars are written in batches of at most this many bars or this many seconds.
COLLECTOR_FLUSH_BARS = envint("COLLECTOR_FLUSH_BARS", 500)
COLLECTOR_FLUSH_SECONDS = envfloat("COLLECTOR_FLUSH_SECONDS", 0.1)

# --- Prometheus metrics at /metrics (docs/metrics.md) -------------------------------------------
METRICS_ENABLED = envbool("METRICS_ENABLED", True)
if METRICS_ENABLED:
    # Last: request counts and latency by view (off with the page: nothing would read them).
    MIDDLEWARE.append("cryptostock.request_metrics.RequestMetricsMiddleware")
# Who may read /metrics (it names every collector, host and instrument): loopback and the private
# networks a Prometheus server usually scrapes from. Behind a reverse proxy the address is the proxy's.
METRICS_ALLOWED_NETWORKS = envnetworks(
    "METRICS_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7"
)
# django-prometheus counts migrations only when asked: that is a database query at every start.
PROMETHEUS_EXPORT_MIGRATIONS = False

# --- Collectors (docs/collectors.md) -----------------------------------------------------------
# Live streams (tests point them at local servers). The REST catch-up uses BINANCE_API_URL and
# ALPACA_DATA_URL, and Alpaca's keys and feed, from the backfill settings below.
BINANCE_WS_URL = os.environ.get("BINANCE_WS_URL", "wss://stream.binance.com:9443")
# Binance USDⓈ-M futures (`collect --source binance-futures`); its REST side is BINANCE_FUTURES_API_URL.
BINANCE_FUTURES_WS_URL = os.environ.get("BINANCE_FUTURES_WS_URL", "wss://fstream.binance.com")
# Empty: alpaca-py's own (wss://stream.data.alpaca.markets/v2/<feed>, .../v1beta3/crypto/us).
ALPACA_STOCK_STREAM_URL = os.environ.get("ALPACA_STOCK_STREAM_URL", "")
ALPACA_CRYPTO_STREAM_URL = os.environ.get("ALPACA_CRYPTO_STREAM_URL", "")
# Where yfinance's requests go (empty: Yahoo itself), seconds between two polls, and the calendar
# whose sessions the polls follow (empty: poll around the clock, for FX, crypto and world indices).
YAHOO_BASE_URL = os.environ.get("YAHOO_BASE_URL", "")
YAHOO_POLL_SECONDS = envfloat("YAHOO_POLL_SECONDS", 60.0)
YAHOO_CALENDAR = os.environ.get("YAHOO_CALENDAR", "")
# Circuit breaker per source: open after this many failures in a row, try again after this long.
COLLECTOR_BREAKER_FAILURES = envint("COLLECTOR_BREAKER_FAILURES", 5)
COLLECTOR_BREAKER_RESET_SECONDS = envfloat("COLLECTOR_BREAKER_RESET_SECONDS", 60.0)
# Reconnect delays: exponential from BASE up to MAX seconds, with random jitter.
COLLECTOR_BACKOFF_BASE_SECONDS = envfloat("COLLECTOR_BACKOFF_BASE_SECONDS", 1.0)
COLLECTOR_BACKOFF_MAX_SECONDS = envfloat("COLLECTOR_BACKOFF_MAX_SECONDS", 60.0)
# An open stream without any message for this long has stalled: reconnect.
COLLECTOR_STALL_SECONDS = envfloat("COLLECTOR_STALL_SECONDS", 30.0)
# A minute's bars close when the source's clock is this many milliseconds past its end.
COLLECTOR_CLOCK_LAG_MS = envint("COLLECTOR_CLOCK_LAG_MS", 1000)
# A trade arriving up to this long after its minute's bar closed corrects that bar (re-published).
COLLECTOR_LATE_GRACE_SECONDS = envfloat("COLLECTOR_LATE_GRACE_SECONDS", 10.0)
# Final bars kept in memory while the database is unreachable; beyond this the oldest are dropped.
COLLECTOR_MAX_BUFFERED_BARS = envint("COLLECTOR_MAX_BUFFERED_BARS", 100_000)
# Seconds between two reads of the active instruments (new ones start streaming, removed ones stop).
COLLECTOR_SYMBOLS_REFRESH_SECONDS = envfloat("COLLECTOR_SYMBOLS_REFRESH_SECONDS", 5.0)
# Seconds between two health reports, and the age at which /ready calls a collector stale.
COLLECTOR_HEALTH_SECONDS = envfloat("COLLECTOR_HEALTH_SECONDS", 5.0)
COLLECTOR_STALE_SECONDS = envfloat("COLLECTOR_STALE_SECONDS", 60.0)
# Relative difference between our bar and the exchange's that is more than rounding.
COLLECTOR_RECONCILE_TOLERANCE = envfloat("COLLECTOR_RECONCILE_TOLERANCE", 1e-9)
# After a restart, trades this far back at most are fetched one by one; older gaps go to the backfill.
COLLECTOR_MAX_CATCHUP_MINUTES = envint("COLLECTOR_MAX_CATCHUP_MINUTES", 120)

# --- Scheduled work: roll-up, backfill, data quality, retention (docs/scheduled.md) -------------


def _retention_days(name: str, default: str) -> dict[str, int]:
    """`1m=90,5m=365`: days kept per timeframe; a timeframe not listed is kept forever."""
    raw = os.environ.get(name, default)
    policy: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        timeframe, _, days = item.partition("=")
        if not days.strip().isdigit() or int(days) < 1:
            raise ImproperlyConfigured(f"{name}={raw!r}: expected timeframe=days pairs, e.g. 1m=90,5m=365")
        policy[timeframe.strip()] = int(days)
    return policy


# Exchange calendar (exchange-calendars name) of stock and index instruments: their daily bar is the
# regular session, labelled with the session date; gaps count only while that exchange is open.
SESSION_CALENDAR = os.environ.get("SESSION_CALENDAR", "XNYS")
BAR_RETENTION_DAYS = _retention_days("BAR_RETENTION_DAYS", "1m=90")
# Bars deleted per statement (and transaction) by the retention task: short locks, steady progress.
RETENTION_BATCH = envint("RETENTION_BATCH", 10_000)
# Where the history clients of `manage.py backfill` connect (tests point them at a local server).
BINANCE_API_URL = os.environ.get("BINANCE_API_URL", "https://api.binance.com")
# Binance USDⓈ-M futures REST (fapi): klines for the backfill, aggTrades for the collector's catch-up.
BINANCE_FUTURES_API_URL = os.environ.get("BINANCE_FUTURES_API_URL", "https://fapi.binance.com")
ALPACA_DATA_URL = os.environ.get("ALPACA_DATA_URL", "https://data.alpaca.markets")
ALPACA_API_KEY = envsecret("ALPACA_API_KEY")
ALPACA_SECRET_KEY = envsecret("ALPACA_SECRET_KEY")
# Alpaca's stock feed: "iex" works on the free plan, "sip" needs a subscription.
ALPACA_STOCK_FEED = os.environ.get("ALPACA_STOCK_FEED", "iex")
# Seconds between two history requests to one source, on top of the client's own rate limiting.
BACKFILL_REQUEST_INTERVAL = envfloat("BACKFILL_REQUEST_INTERVAL", 0.35)
# Timeframes the data-quality task scores, every hour, for yesterday and today.
QUALITY_TIMEFRAMES = envlist("QUALITY_TIMEFRAMES", "1m")

# Declared here, copied into django-celery-beat's tables when beat starts (DatabaseScheduler), and
# editable in the admin from there. Beat re-applies these values at each start; disabling an entry
# in the admin sticks.
CELERY_BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "roll-up": {"task": "market.tasks.rollup_task", "schedule": 60.0, "options": {"expire_seconds": 55}},
    "data-quality": {
        "task": "market.tasks.check_quality_task",
        "schedule": crontab(minute="7"),
        "options": {"expire_seconds": 3000},
    },
    "retention": {"task": "market.tasks.enforce_retention_task", "schedule": crontab(hour="3", minute="17")},
}
CELERY_RESULT_EXTENDED = True  # task name and arguments in the admin's task results

# --- Backups (docs/backups.md) -------------------------------------------------------------------
BACKUP_DIR = Path(os.environ.get("BACKUP_DIR") or VAR_DIR / "backups")
# How many to keep: the newest of each of the last N days, ISO weeks and months that have a backup.
try:
    BACKUP_KEEP = KeepPolicy.parse(os.environ.get("BACKUP_KEEP", "daily=7,weekly=4,monthly=12"))
except ValueError as invalid:
    raise ImproperlyConfigured(f"BACKUP_KEEP: {invalid}") from invalid
# gzip level of the dump, 0 (none) to 9. Bars are floats, which compress little: level 1 dumps 4.6x
# faster than pg_dump's default 6 for files 7% bigger (docs/backups.md, "Measured").
BACKUP_COMPRESSION = envint("BACKUP_COMPRESSION", 1)
if not 0 <= BACKUP_COMPRESSION <= 9:
    raise ImproperlyConfigured(f"BACKUP_COMPRESSION={BACKUP_COMPRESSION}: expected 0 to 9")
# Where pg_dump and pg_restore are, when not on PATH (their major version must be the server's or newer).
BACKUP_PG_BIN_DIR = os.environ.get("BACKUP_PG_BIN_DIR", "")
# Run after each nightly backup, to copy it off this machine: words split as a shell would, with
# {backup}, {checksum} (paths) and {dir} filled in, run without a shell. Empty: no copy.
# E.g. `rclone copy {backup} {checksum} offsite:cryptostock/`.
BACKUP_COPY_COMMAND = os.environ.get("BACKUP_COPY_COMMAND", "")
if problem := copy_command_problem(BACKUP_COPY_COMMAND):
    raise ImproperlyConfigured(f"BACKUP_COPY_COMMAND: {problem}")
BACKUP_COPY_TIMEOUT = envfloat("BACKUP_COPY_TIMEOUT", 3600.0)
CELERY_BEAT_SCHEDULE["backup"] = {"task": "backups.tasks.backup_task", "schedule": crontab(hour="2", minute="41")}
CELERY_BEAT_SCHEDULE["audit-retention"] = {
    "task": "accounts.tasks.prune_audit_trail_task",
    "schedule": crontab(hour="3", minute="29"),
}

# --- Alerts ------------------------------------------------------------------------------------
# Email: the console backend prints alert emails in the embedded setup; production sets SMTP.
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = envint("EMAIL_PORT", 25)
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = envsecret("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = envint("EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "cryptostock <alerts@localhost>")
# Webhook, Telegram and Slack requests: timeout per attempt, then retries with exponential
# backoff (BACKOFF, 2 x BACKOFF, 4 x BACKOFF, ... seconds) before the failure is recorded.
ALERTS_HTTP_TIMEOUT = envfloat("ALERTS_HTTP_TIMEOUT", 5.0)
ALERTS_DELIVERY_MAX_RETRIES = envint("ALERTS_DELIVERY_MAX_RETRIES", 5)
ALERTS_DELIVERY_BACKOFF_SECONDS = envfloat("ALERTS_DELIVERY_BACKOFF_SECONDS", 10.0)
# Webhook, Telegram and Slack requests go to public addresses only (no private, loopback,
# link-local or reserved ones: a rule's author must not reach the server's own network). On for a
# receiver on the same network as the server, or tests with a local server.
ALERTS_WEBHOOK_ALLOW_PRIVATE = envbool("ALERTS_WEBHOOK_ALLOW_PRIVATE", False)
# Bot API base URLs (tests point them at a local server) and the bots' tokens.
ALERTS_TELEGRAM_API_URL = os.environ.get("ALERTS_TELEGRAM_API_URL", "https://api.telegram.org")
ALERTS_TELEGRAM_BOT_TOKEN = envsecret("ALERTS_TELEGRAM_BOT_TOKEN")
ALERTS_SLACK_API_URL = os.environ.get("ALERTS_SLACK_API_URL", "https://slack.com/api")
ALERTS_SLACK_BOT_TOKEN = envsecret("ALERTS_SLACK_BOT_TOKEN")
# Intrabar rules (judged on partial bars): a feed's partial bar is judged at most every
# INTRABAR_SECONDS, and the collector re-reads which feeds have such rules every REFRESH_SECONDS.
ALERTS_INTRABAR_SECONDS = envfloat("ALERTS_INTRABAR_SECONDS", 1.0)
ALERTS_INTRABAR_REFRESH_SECONDS = envfloat("ALERTS_INTRABAR_REFRESH_SECONDS", 10.0)
# How often beat looks for feeds whose collector went quiet (collector-down rules).
ALERTS_COLLECTOR_CHECK_SECONDS = envfloat("ALERTS_COLLECTOR_CHECK_SECONDS", 60.0)
CELERY_BEAT_SCHEDULE["alerts-check-collectors"] = {
    "task": "alerts.tasks.check_collectors_task",
    "schedule": ALERTS_COLLECTOR_CHECK_SECONDS,
    "options": {"expire_seconds": max(1.0, ALERTS_COLLECTOR_CHECK_SECONDS - 5)},
}

# --- Backtests ---------------------------------------------------------------------------------
# At most this many bars in one backtest (a longer range fails with a message to narrow it), and
# the equity curve's points in a result unless `?points=` asks otherwise.
BACKTEST_MAX_BARS = envint("BACKTEST_MAX_BARS", 2_000_000)
BACKTEST_EQUITY_POINTS = envint("BACKTEST_EQUITY_POINTS", 1000)
# A backtest `running` for longer than this lost its worker: it is marked failed (checked every 5 min).
BACKTEST_STALE_MINUTES = envint("BACKTEST_STALE_MINUTES", 60)
CELERY_BEAT_SCHEDULE["backtests-fail-stale"] = {
    "task": "backtest.tasks.fail_stale_backtests_task",
    "schedule": 300.0,
    "options": {"expire_seconds": 290},
}

# --- Exports (docs/exports.md) -----------------------------------------------------------------
# Background export files, one per export, deleted with it EXPORT_TTL_HOURS after it finished.
EXPORT_DIR = Path(os.environ.get("EXPORT_DIR") or VAR_DIR / "exports")
EXPORT_TTL_HOURS = envint("EXPORT_TTL_HOURS", 24)
# Bars one streamed export (GET /api/v1/exports/bars/) may hold; bigger ranges go to a background export.
EXPORT_MAX_ROWS = envint("EXPORT_MAX_ROWS", 1_000_000)
CELERY_BEAT_SCHEDULE["exports-delete-expired"] = {
    "task": "exports.tasks.delete_expired_exports_task",
    "schedule": crontab(minute="23"),
    "options": {"expire_seconds": 3000},
}

# --- Arbitrage detection (docs/arbitrage.md) -----------------------------------------------------


def _venue_numbers(name: str, default: str = "") -> dict[str, float]:
    """`binance=10,kraken=26`: a number per exchange code."""
    raw = os.environ.get(name, default)
    numbers: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        code, _, number = item.partition("=")
        problem = f"{name}={raw!r}: expected code=number pairs, 0 <= number < 10000, e.g. binance=10,kraken=26"
        try:
            value = float(number)
        except ValueError:
            raise ImproperlyConfigured(problem) from None
        if not code.strip() or not 0 <= value < 10_000:
            raise ImproperlyConfigured(problem)
        numbers[code.strip()] = value
    return numbers


def _quote_equivalents(name: str) -> dict[str, str]:
    """`USDT=USD,USDC=USD`: quote currencies that count as another one (empty: none do)."""
    raw = os.environ.get(name, "")
    pairs: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        quote, _, same_as = item.partition("=")
        if not 0 < len(quote.strip()) <= 20 or not 0 < len(same_as.strip()) <= 20:  # Instrument.quote's length
            raise ImproperlyConfigured(f"{name}={raw!r}: expected quote=currency pairs, e.g. USDT=USD,USDC=USD")
        pairs[quote.strip().upper()] = same_as.strip().upper()
    return pairs


# Seconds between two detections (beat); a net spread (after both taker fees) must be above MIN_NET_BPS;
# prices older than MAX_AGE_SECONDS never count; taker fees in bps per exchange code, DEFAULT for
# the others; quote currencies that count as one (off by default: a stablecoin is not its currency).
ARBITRAGE_INTERVAL_SECONDS = envfloat("ARBITRAGE_INTERVAL_SECONDS", 15.0)
ARBITRAGE_MIN_NET_BPS = envfloat("ARBITRAGE_MIN_NET_BPS", 5.0)
ARBITRAGE_MAX_AGE_SECONDS = envfloat("ARBITRAGE_MAX_AGE_SECONDS", 120.0)
ARBITRAGE_DEFAULT_FEE_BPS = envfloat("ARBITRAGE_DEFAULT_FEE_BPS", 10.0)
ARBITRAGE_FEES_BPS = _venue_numbers("ARBITRAGE_FEES_BPS")
ARBITRAGE_QUOTE_EQUIVALENTS = _quote_equivalents("ARBITRAGE_QUOTE_EQUIVALENTS")
CELERY_BEAT_SCHEDULE["arbitrage"] = {
    "task": "market.tasks.detect_arbitrage_task",
    "schedule": ARBITRAGE_INTERVAL_SECONDS,
    "options": {"expire_seconds": max(1.0, ARBITRAGE_INTERVAL_SECONDS - 1)},
}

# --- Logging ------------------------------------------------------------------------------------
# To standard error, where Docker, systemd and Kubernetes collect and rotate it. LOG_FORMAT=json: one
# JSON object per line for a log shipper (time in UTC ISO 8601, level, logger, message, and a record's
# extra fields, such as the audit trail's: accounts.audit). LOG_FILE: also append to this file,
# reopened when logrotate moves it (WatchedFileHandler); rotating inside the process would be unsafe
# with the several processes (web, worker, beat, collectors) that write one file.
LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO").upper()
LOG_FORMAT = os.environ.get("LOG_FORMAT", "plain").strip().lower() or "plain"
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT={LOG_FORMAT!r}: use plain or json")
LOG_FILE = os.environ.get("LOG_FILE", "")
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s%(request_tag)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": ["levelname", "name", "message", "request_id"],
            "rename_fields": {"levelname": "level", "name": "logger"},
            "timestamp": "time",
            # request_tag is the plain format's; request_id says the same
            "reserved_attrs": [*RESERVED_LOG_ATTRS, "request_tag"],
        },
    },
    # Every record gets the request id of the request (or task) it was written in.
    "filters": {"request_id": {"()": "cryptostock.request_id.RequestIdFilter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["request_id"]}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"daphne": {"level": "WARNING"}, "django.channels.server": {"level": "WARNING"}},
}
if LOG_FILE:
    LOGGING["handlers"]["file"] = {
        "class": "logging.handlers.WatchedFileHandler",
        "filename": LOG_FILE,
        "formatter": LOG_FORMAT,
        "filters": ["request_id"],
        "delay": True,
    }
    LOGGING["root"]["handlers"].append("file")

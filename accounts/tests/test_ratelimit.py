"""Rate limits: 100 requests a minute per user, fewer per IP for anonymous clients, fewer still on the
login and token endpoints; over the limit, 429 with Retry-After in the API's error shape.

The limiter's clock is replaced by one the test moves, each test starting at a random minute: the
counters live in the shared cache, so every test counts in windows of its own.
"""

from __future__ import annotations

import pytest
from rest_framework_simplejwt.tokens import AccessToken

pytestmark = pytest.mark.django_db


def bearer(user) -> dict[str, str]:
    return {"Authorization": f"Bearer {AccessToken.for_user(user)}"}


def test_the_101st_request_in_a_minute_gets_429_with_retry_after(client, clock, make_user):
    headers = bearer(make_user("viewer"))

    statuses = [client.get("/api/v1/me/", headers=headers).status_code for _ in range(100)]
    refused = client.get("/api/v1/me/", headers=headers)

    assert statuses == [200] * 100
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 60
    error = refused.json()["error"]
    assert error["code"] == "throttled"
    assert "seconds" in error["message"]


def test_the_limit_lifts_in_the_next_window(client, clock, make_user):
    headers = bearer(make_user("viewer"))
    for _ in range(101):
        client.get("/api/v1/me/", headers=headers)

    clock.now += 60

    assert client.get("/api/v1/me/", headers=headers).status_code == 200


def test_each_user_has_their_own_count(client, clock, make_user):
    first, second = bearer(make_user("viewer")), bearer(make_user("viewer"))
    for _ in range(101):
        client.get("/api/v1/me/", headers=first)

    assert client.get("/api/v1/me/", headers=first).status_code == 429
    assert client.get("/api/v1/me/", headers=second).status_code == 200


def test_anonymous_clients_get_a_lower_limit_per_ip(client, clock, settings):
    settings.PUBLIC_MARKET_DATA = True

    statuses = [client.get("/api/v1/exchanges/").status_code for _ in range(31)]

    assert statuses == [200] * 30 + [429]


def test_token_endpoints_allow_ten_attempts_a_minute_per_ip(client, clock, make_user, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    make_user("viewer", username="vera")
    body = {"username": "vera", "password": "guess"}

    statuses = [
        client.post("/api/v1/auth/token/", body, content_type="application/json").status_code for _ in range(11)
    ]

    assert statuses == [401] * 10 + [429]
    # Refreshing counts in the same group: the guesser gains nothing by switching endpoints.
    refresh = client.post("/api/v1/auth/token/refresh/", {"refresh": "x"}, content_type="application/json")
    assert refresh.status_code == 429


def test_the_login_form_allows_ten_attempts_a_minute_per_ip(client, clock, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    statuses = [client.post("/accounts/login/", {"username": "x", "password": "y"}).status_code for _ in range(11)]

    assert statuses == [200] * 10 + [429]


def test_limits_are_configured_per_endpoint_group(client, clock, settings, make_user):
    settings.API_RATE_LIMITS = {**settings.API_RATE_LIMITS, "default": {"user": "3/m", "anon": "1/m"}}
    headers = bearer(make_user("viewer"))

    statuses = [client.get("/api/v1/me/", headers=headers).status_code for _ in range(4)]

    assert statuses == [200, 200, 200, 429]


def test_rate_limits_can_be_switched_off(client, clock, settings, make_user):
    settings.RATELIMIT_ENABLE = False
    headers = bearer(make_user("viewer"))

    assert {client.get("/api/v1/me/", headers=headers).status_code for _ in range(105)} == {200}


def test_a_failing_cache_lets_requests_through(client, clock, make_user, settings):
    # A Redis cache nothing listens for (port 1): every count fails to connect.
    down = {"BACKEND": "cryptostock.redis_cache.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}
    settings.CACHES = {**settings.CACHES, "down": down}
    settings.RATELIMIT_USE_CACHE = "down"

    assert client.get("/api/v1/me/", headers=bearer(make_user("viewer"))).status_code == 200

"""/health says the process is alive; /ready checks each dependency and names what fails."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_health_answers_without_touching_dependencies(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ready_checks_database_cache_and_channel_layer(client):
    response = client.get("/ready")
    assert response.status_code == 200
    assert response.json()["components"] == {"database": "ok", "cache": "ok", "channel_layer": "ok", "collectors": "ok"}


def test_ready_is_503_and_names_the_cache_when_redis_is_unreachable(client, settings):
    # Given a cache pointing at a port where nothing listens (a real connection failure)
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}
    }
    # (changing CACHES through the settings fixture makes Django rebuild its cache handlers)

    # When readiness is asked
    response = client.get("/ready")

    # Then it is not ready, and says the cache is why
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["cache"]
    assert body["components"]["database"] == "ok"
    assert "ConnectionError" in body["components"]["cache"]


def test_ready_can_leave_components_out_and_refuses_unknown_ones(client):
    skipped = client.get("/ready?skip=collectors")
    unknown = client.get("/ready?skip=collectors,databse")

    assert skipped.status_code == 200
    assert skipped.json()["components"] == {"database": "ok", "cache": "ok", "channel_layer": "ok"}
    assert unknown.status_code == 400
    assert unknown.json()["error"] == (
        "skip: unknown component(s) databse; known: database, cache, channel_layer, collectors"
    )

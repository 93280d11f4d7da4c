"""Fixtures for every app's tests: rate limits and the bars cache off, eager Celery, static files
without a manifest, users with a role."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import AbstractUser
from django.test import Client


@pytest.fixture(autouse=True)
def _rate_limits_off(settings):
    """Counters live in the cache (Redis, shared across tests and concurrent runs), so a test that
    counts requests would see other tests' requests. Rate-limit tests turn them back on."""
    settings.RATELIMIT_ENABLE = False


@pytest.fixture(autouse=True)
def _bars_cache_off(settings):
    """Cached bars responses live in the cache (Redis, kept across runs) under instrument ids, and each
    run's test database numbers its instruments from 1 again: a test could be answered with another
    run's bars. The bars cache tests turn it back on for instruments they invalidate first."""
    settings.API_BARS_CACHE_SECONDS = 0


@pytest.fixture(autouse=True)
def _celery_eager(settings):
    """Tasks run in-process (there is no worker in the suite) even with REDIS_URL set, so a test never
    leaves messages queued in Redis for a later test's worker. A test that starts a real worker turns
    this off itself. Celery reads Django's settings live, so the fixture's undo restores it."""
    settings.CELERY_TASK_ALWAYS_EAGER = True


@pytest.fixture(autouse=True)
def _static_files_without_manifest(settings):
    """Production serves hashed static files from collectstatic's manifest, which the suite does not
    build; pages that link static files (admin, docs, chart) render with plain names instead."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture(autouse=True)
def _export_files_in_a_temporary_directory(settings, tmp_path_factory):
    """Export files (exports app) go to a directory of the test's own, never into the checkout's var/."""
    settings.EXPORT_DIR = tmp_path_factory.mktemp("exports")


@pytest.fixture
def make_user(db) -> Callable[..., AbstractUser]:
    """make_user("analyst") -> a new active user with that role (no password: log in with force_login)."""
    from django.contrib.auth import get_user_model

    from accounts.services import set_role

    counter = iter(range(1, 1_000_000))

    def make(role: str | None = None, *, username: str | None = None) -> AbstractUser:
        user = get_user_model().objects.create_user(username=username or f"{role or 'user'}-{next(counter)}")
        if role is not None:
            set_role(user, role)
        return user

    return make


@pytest.fixture
def viewer_client(make_user) -> Client:
    """A test client logged in (session) as a viewer: may read market data."""
    from accounts.tests.clients import logged_in

    return logged_in(make_user("viewer"))

"""Property-based fuzzing of the whole OpenAPI schema (schemathesis): no input makes the API answer
5xx, and every response keeps to the schema (status codes, content type, body, headers).

The requests go in-process to the WSGI application inside the test's transaction, as an admin (who
may call every endpoint, so every code path is reachable) holding some real market data. The
number of generated examples per operation is bounded to keep the suite fast; more with
`API_FUZZ_EXAMPLES=500 pytest accounts/tests/test_api_fuzz.py`.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, settings
from rest_framework_simplejwt.tokens import RefreshToken
from schemathesis.specs.openapi.checks import positive_data_acceptance

from cryptostock.wsgi import application
from market.barstore import BarRow
from market.models import Exchange, Instrument
from market.services import store_bars

EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES", "10"))


@pytest.fixture
def market_data(db):
    exchange = Exchange.objects.create(code="binance", name="Binance")
    instrument = Instrument.objects.create(exchange=exchange, symbol="BTC/USDT")
    start = datetime(2024, 1, 1, tzinfo=UTC)
    bars = [
        BarRow(instrument.pk, "1m", start + timedelta(minutes=i), 100.0, 101.0, 99.0, 100.5, 3.0, 7, 100.2, True)
        for i in range(50)
    ]
    store_bars(bars, publish=False)
    return instrument


@pytest.fixture
def wsgi_app(market_data, settings_for_fuzzing):
    # As Django's test client does: the request signals must not close the test's connection,
    # which holds the test's transaction (and so the data above).
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield application
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def settings_for_fuzzing(settings):
    # Password checks on every generated login attempt would dominate the run with Argon2.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return settings


@pytest.fixture
def admin_headers(make_user) -> dict[str, str]:
    admin = make_user("admin")
    return {"Authorization": f"Bearer {RefreshToken.for_user(admin).access_token}"}


def served_schema() -> dict[str, Any]:
    """The schema /api/schema/ serves, generated here without a request (at collection time, where
    the database is off limits; schemathesis' lazy loading from a fixture does not work with pytest 9)."""
    generator = SchemaGenerator(api_version="v1")  # type: ignore[no-untyped-call]
    openapi = generator.get_schema(request=None, public=True)  # type: ignore[no-untyped-call]
    return json.loads(OpenApiJsonRenderer().render(openapi))


schema = schemathesis.openapi.from_dict(served_schema())
schema.app = application  # checks that send follow-up requests (auth, use after delete) need it too
schema.config.generation.update(max_examples=EXAMPLES)

# Left out: "a schema-valid request must be accepted". The API rightly answers 400 to requests whose
# flaws OpenAPI cannot express: an instrument id that does not exist, `start` not before `end`, an
# unknown time zone, an alert rule whose parameters do not fit its condition.
EXCLUDED_CHECKS = [positive_data_acceptance]


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_makes_the_api_fail_or_leave_its_schema(case, wsgi_app, admin_headers):
    case.call_and_validate(headers=admin_headers, excluded_checks=EXCLUDED_CHECKS)

"""The audit trail (accounts.audit): what it adds to a change of an audited object and to a sign-in.

- change: saves of an instrument with one field changed, through the ORM, with the trail recording
  each (django-auditlog reads the stored row to diff it, then writes a LogEntry, which our receivers
  give its origin and log) side by side with the same saves with auditlog switched off
  (`disable_auditlog()`, the baseline).
- sign-in: `POST /api/v1/auth/token/` with a right password, through Django's whole handler (the
  test client, no network; MD5 hashing so the password check does not hide the rest), recording
  each sign-in, side by side with the same requests without the recording (the baseline).

Rounds interleaved, best of a few, as the machine is shared. `python -m bench.run audit`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench import best_rates_interleaved, measurement

CHANGES = 1000
SIGN_INS = 300
ROUNDS = 5
PASSWORD = "bench-audit-password"


def changes() -> tuple[float, float]:
    from auditlog.context import disable_auditlog

    from market.models import Exchange, Instrument

    exchange, _ = Exchange.objects.get_or_create(code="bench-audit", defaults={"name": "Bench"})
    instrument, _ = Instrument.objects.get_or_create(exchange=exchange, symbol="AUD/USDT")

    def save_many() -> None:
        for k in range(CHANGES):
            instrument.base = f"A{k % 2}"
            instrument.save()

    def save_many_unaudited() -> None:
        with disable_auditlog():
            save_many()

    audited, bare = best_rates_interleaved(CHANGES, [save_many, save_many_unaudited], ROUNDS)
    return audited, bare


def sign_ins() -> tuple[float, float]:
    from unittest import mock

    from django.contrib.auth import get_user_model
    from django.test import Client, override_settings

    from accounts.services import set_role

    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        user, _ = get_user_model().objects.get_or_create(username="bench-audit")
        user.set_password(PASSWORD)
        user.save()
        set_role(user, "viewer")
        client = Client(HTTP_HOST="127.0.0.1")
        body = {"username": "bench-audit", "password": PASSWORD}

        def sign_in_many() -> None:
            for _ in range(SIGN_INS):
                response = client.post("/api/v1/auth/token/", body, content_type="application/json")
                assert response.status_code == 200, response.content

        def sign_in_many_unrecorded() -> None:
            with mock.patch("accounts.api.views.record_auth_event"):
                sign_in_many()

        with override_settings(RATELIMIT_ENABLE=False):
            recorded, bare = best_rates_interleaved(SIGN_INS, [sign_in_many, sign_in_many_unrecorded], ROUNDS)
    return recorded, bare


@contextmanager
def log_lines_discarded() -> Iterator[None]:
    """Each entry is logged (formatted and written, as in production), to /dev/null instead of the
    terminal: thousands of lines would bury the results."""
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)]
    with open(os.devnull, "w") as devnull:
        streams = [h.setStream(devnull) for h in handlers]
        try:
            yield
        finally:
            for handler, stream in zip(handlers, streams, strict=True):
                handler.setStream(stream)


def run() -> Iterator[dict[str, Any]]:
    with log_lines_discarded():
        audited, bare = changes()
    yield measurement("audit.instrument_change.vs_unaudited", audited, "saves/s", bare)
    yield measurement("audit.instrument_change.added_per_save", 1e6 / audited - 1e6 / bare, "us")
    with log_lines_discarded():
        recorded, unrecorded = sign_ins()
    yield measurement("audit.api_sign_in.vs_unrecorded", recorded, "sign-ins/s", unrecorded)
    yield measurement("audit.api_sign_in.added_per_sign_in", 1e6 / recorded - 1e6 / unrecorded, "us")

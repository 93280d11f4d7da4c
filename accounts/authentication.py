"""JWT authentication that remembers a token's user, and the token itself, for a few seconds per process.

simplejwt looks the user up on every request (one query, and a database connection that a request
served from the cache would otherwise not need). The user is remembered for
`CAPABILITY_CACHE_SECONDS`, like their permissions (accounts.capabilities): a deactivation or a
password change (which ends the tokens issued before it) applies within that many seconds in other
processes, at once in the one that made it (`forget_user`). 0 looks the user up every time.

A client sends the same access token with every request until it expires, and simplejwt decodes it
again each time (base64, JSON, the HMAC signature, the claims: about a sixth of the CPU of an
uncached bars request outside the bars themselves). The validated token is remembered for the same
few seconds under its exact encoded bytes, and its expiry is checked again on every use, so an
expired token is refused as before (with simplejwt's own answer: it is then decoded afresh). Access
tokens are not on the blacklist (only refresh tokens are), so nothing else about one can change.
"""

from __future__ import annotations

import copy
import time
from typing import Any

from django.conf import settings
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import Token
from rest_framework_simplejwt.utils import aware_utcnow

MAX_REMEMBERED = 10_000

# (user id, the token's password-hash claim) -> (monotonic expiry, user). The claim tells a new user
# who got a recycled id (SQLite reuses them after a rollback) from the old one.
_remembered: dict[tuple[Any, Any], tuple[float, Any]] = {}
# The encoded token -> (monotonic expiry, the validated token).
_validated: dict[bytes, tuple[float, Token]] = {}


class RememberingJWTAuthentication(JWTAuthentication):
    def get_validated_token(self, raw_token: bytes) -> Token:
        seconds = settings.CAPABILITY_CACHE_SECONDS
        if seconds <= 0:
            return super().get_validated_token(raw_token)
        now = time.monotonic()
        remembered = _validated.get(raw_token)
        if remembered is not None and remembered[0] > now and not _expired(remembered[1]):
            return remembered[1]
        # Refusals raise here and are never remembered; an expired token is refused by simplejwt.
        token = super().get_validated_token(raw_token)
        if len(_validated) >= MAX_REMEMBERED:
            _validated.clear()
        _validated[raw_token] = (now + seconds, token)
        return token

    def get_user(self, validated_token: Token) -> Any:
        seconds = settings.CAPABILITY_CACHE_SECONDS
        if seconds <= 0:
            return super().get_user(validated_token)
        key = (validated_token.get(api_settings.USER_ID_CLAIM), validated_token.get(api_settings.REVOKE_TOKEN_CLAIM))
        now = time.monotonic()
        remembered = _remembered.get(key)
        if remembered is None or remembered[0] <= now:
            # Refusals (unknown user, inactive, password changed) raise here and are never remembered.
            user = super().get_user(validated_token)
            if len(_remembered) >= MAX_REMEMBERED:
                _remembered.clear()
            remembered = _remembered[key] = (now + seconds, user)
        # A copy per request: a view may change its request's user (a password change) and requests
        # run in parallel threads.
        return copy.copy(remembered[1])


def _expired(token: Token) -> bool:
    try:
        token.check_exp(current_time=aware_utcnow())  # the token's own clock is its decoding time
    except TokenError:
        return True
    return False


def forget_saved_user(sender: Any, instance: Any, **kwargs: Any) -> None:
    """post_save of the user model (connected in accounts.apps): every save counts as a change."""
    forget_user(instance)


def forget_user(user: Any) -> None:
    """The user changed (roles, password, deactivated): look them up afresh (in this process)."""
    for key in [key for key in _remembered if str(key[0]) == str(user.pk)]:
        _remembered.pop(key, None)

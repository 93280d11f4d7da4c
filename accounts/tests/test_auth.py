"""JWT login, expiry, refresh rotation and logout; the session with CSRF; passwords."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import identify_hasher
from django.middleware.csrf import get_token
from django.test import Client, RequestFactory
from rest_framework_simplejwt.backends import TokenBackend
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken
from rest_framework_simplejwt.utils import aware_utcnow

from accounts.roles import VIEWER
from accounts.services import create_user

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery-staple"


@pytest.fixture
def viewer(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return create_user(username="vera", password=PASSWORD, role=VIEWER)


def post_json(client: Client, path: str, body: dict[str, Any], **headers):
    return client.post(path, body, content_type="application/json", headers=headers)


def bearer(token) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_user_logs_in_with_a_password_and_reads_with_the_access_token(client, viewer):
    tokens = post_json(client, "/api/v1/auth/token/", {"username": "vera", "password": PASSWORD}).json()

    me = client.get("/api/v1/me/", headers=bearer(tokens["access"]))

    assert me.status_code == 200
    assert me.json()["username"] == "vera"
    assert me.json()["roles"] == ["viewer"]
    assert me.json()["capabilities"] == ["read_market_data"]


def test_a_wrong_password_is_401_in_the_error_shape(client, viewer):
    response = post_json(client, "/api/v1/auth/token/", {"username": "vera", "password": "wrong"})

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "no_active_account"
    assert response.json()["error"]["message"]


def test_access_tokens_live_sixty_minutes(client, viewer):
    almost = AccessToken.for_user(viewer)
    almost.set_exp(from_time=aware_utcnow() - timedelta(minutes=59))
    expired = AccessToken.for_user(viewer)
    expired.set_exp(from_time=aware_utcnow() - timedelta(minutes=61))

    assert client.get("/api/v1/me/", headers=bearer(almost)).status_code == 200
    response = client.get("/api/v1/me/", headers=bearer(expired))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_not_valid"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_refresh_rotates_the_refresh_token_and_the_old_one_stops_working(client, viewer):
    first = RefreshToken.for_user(viewer)

    rotated = post_json(client, "/api/v1/auth/token/refresh/", {"refresh": str(first)})
    again = post_json(client, "/api/v1/auth/token/refresh/", {"refresh": str(first)})

    assert rotated.status_code == 200
    assert set(rotated.json()) == {"access", "refresh"}
    assert rotated.json()["refresh"] != str(first)
    assert client.get("/api/v1/me/", headers=bearer(rotated.json()["access"])).status_code == 200
    assert again.status_code == 401
    assert again.json()["error"]["code"] == "token_not_valid"
    # The new refresh token works, once.
    assert post_json(client, "/api/v1/auth/token/refresh/", {"refresh": rotated.json()["refresh"]}).status_code == 200


def test_an_expired_refresh_token_cannot_be_refreshed(client, viewer, settings):
    token = RefreshToken.for_user(viewer)
    token.set_exp(from_time=aware_utcnow() - settings.SIMPLE_JWT["REFRESH_TOKEN_LIFETIME"] - timedelta(seconds=1))

    assert post_json(client, "/api/v1/auth/token/refresh/", {"refresh": str(token)}).status_code == 401


def test_logout_blacklists_the_refresh_token(client, viewer):
    token = RefreshToken.for_user(viewer)

    assert post_json(client, "/api/v1/auth/logout/", {"refresh": str(token)}).status_code == 200
    assert post_json(client, "/api/v1/auth/token/refresh/", {"refresh": str(token)}).status_code == 401


def test_verify_tells_valid_from_invalid_tokens(client, viewer):
    valid = str(AccessToken.for_user(viewer))

    assert post_json(client, "/api/v1/auth/token/verify/", {"token": valid}).status_code == 200
    assert post_json(client, "/api/v1/auth/token/verify/", {"token": valid[:-4] + "abcd"}).status_code == 401


def test_a_password_change_ends_the_tokens_issued_before_it(client, viewer):
    access = AccessToken.for_user(viewer)
    viewer.set_password("another-long-password")
    viewer.save()

    assert client.get("/api/v1/me/", headers=bearer(access)).status_code == 401


def test_a_deactivated_user_is_refused_with_a_valid_token(client, viewer):
    access = AccessToken.for_user(viewer)
    get_user_model().objects.filter(pk=viewer.pk).update(is_active=False)

    assert client.get("/api/v1/me/", headers=bearer(access)).status_code == 401


def test_a_password_change_ends_the_tokens_of_a_remembered_user_at_once(client, viewer, settings):
    settings.CAPABILITY_CACHE_SECONDS = 60
    access = AccessToken.for_user(viewer)
    assert client.get("/api/v1/me/", headers=bearer(access)).status_code == 200
    viewer.set_password("another-long-password")
    viewer.save()

    assert client.get("/api/v1/me/", headers=bearer(access)).status_code == 401


def test_a_deactivated_user_is_refused_though_remembered_once_saved(client, viewer, settings):
    settings.CAPABILITY_CACHE_SECONDS = 60
    access = AccessToken.for_user(viewer)
    assert client.get("/api/v1/me/", headers=bearer(access)).status_code == 200
    viewer.is_active = False
    viewer.save()

    assert client.get("/api/v1/me/", headers=bearer(access)).status_code == 401


def test_a_user_changed_elsewhere_is_remembered_for_the_cache_time_and_not_with_it_off(client, viewer, settings):
    settings.CAPABILITY_CACHE_SECONDS = 60
    access = AccessToken.for_user(viewer)
    assert client.get("/api/v1/me/", headers=bearer(access)).status_code == 200
    # A change made elsewhere (another process, a bulk update): no save in this process to notice.
    get_user_model().objects.filter(pk=viewer.pk).update(is_active=False)
    assert client.get("/api/v1/me/", headers=bearer(access)).status_code == 200
    settings.CAPABILITY_CACHE_SECONDS = 0

    assert client.get("/api/v1/me/", headers=bearer(access)).status_code == 401


def test_a_remembered_access_token_is_refused_once_it_expires(client, viewer, settings):
    settings.CAPABILITY_CACHE_SECONDS = 60
    access = AccessToken.for_user(viewer)
    access.set_exp(lifetime=timedelta(seconds=2))
    assert client.get("/api/v1/me/", headers=bearer(access)).status_code == 200

    time.sleep(2.1)
    response = client.get("/api/v1/me/", headers=bearer(access))

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_not_valid"


def test_a_token_is_decoded_once_while_remembered_and_every_time_with_remembering_off(
    client, viewer, settings, monkeypatch
):
    decoded: list[str] = []
    decode = TokenBackend.decode

    def counting_decode(self: TokenBackend, token: Any, verify: bool = True) -> dict[str, Any]:
        decoded.append(token)
        return decode(self, token, verify)

    monkeypatch.setattr(TokenBackend, "decode", counting_decode)
    access = bearer(AccessToken.for_user(viewer))
    settings.CAPABILITY_CACHE_SECONDS = 60
    for _ in range(3):
        assert client.get("/api/v1/me/", headers=access).status_code == 200
    remembered = len(decoded)
    settings.CAPABILITY_CACHE_SECONDS = 0
    for _ in range(3):
        assert client.get("/api/v1/me/", headers=access).status_code == 200

    assert (remembered, len(decoded)) == (1, 4)


def test_a_user_lists_their_logins_and_revokes_one(client, viewer, make_user):
    phone, laptop = RefreshToken.for_user(viewer), RefreshToken.for_user(viewer)
    RefreshToken.for_user(make_user("viewer"))  # someone else's login, not listed
    access = bearer(laptop.access_token)

    listed = client.get("/api/v1/me/tokens/", headers=access).json()["results"]
    phone_id = next(row["id"] for row in listed if row["jti"] == phone["jti"])
    revoked = client.post(f"/api/v1/me/tokens/{phone_id}/revoke/", headers=access)

    assert {row["jti"] for row in listed} == {phone["jti"], laptop["jti"]}
    assert revoked.status_code == 204
    assert post_json(client, "/api/v1/auth/token/refresh/", {"refresh": str(phone)}).status_code == 401
    assert post_json(client, "/api/v1/auth/token/refresh/", {"refresh": str(laptop)}).status_code == 200


def test_session_writes_need_the_csrf_token(viewer, make_user):
    admin = make_user("admin")
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin)

    without = client.post("/api/v1/exchanges/", {"code": "kraken", "name": "Kraken"}, content_type="application/json")
    token = _csrf_token(client)
    with_token = client.post(
        "/api/v1/exchanges/",
        {"code": "kraken", "name": "Kraken"},
        content_type="application/json",
        headers={"X-CSRFToken": token},
    )

    assert without.status_code == 403
    assert "CSRF" in without.json()["error"]["message"]
    assert with_token.status_code == 201


def _csrf_token(client: Client) -> str:
    """What a page's {% csrf_token %} gives the browser: the cookie, and the token for the header."""
    request = RequestFactory().get("/")
    token = get_token(request)
    client.cookies["csrftoken"] = request.META["CSRF_COOKIE"]
    return token


def test_token_writes_need_no_csrf_token(viewer, make_user):
    client = Client(enforce_csrf_checks=True)
    access = AccessToken.for_user(make_user("admin"))

    response = client.post(
        "/api/v1/exchanges/",
        {"code": "kraken", "name": "Kraken"},
        content_type="application/json",
        headers=bearer(access),
    )

    assert response.status_code == 201


def test_passwords_are_hashed_with_argon2():
    user = create_user(username="ada", password=PASSWORD, role=VIEWER)

    assert identify_hasher(user.password).algorithm == "argon2"


@pytest.mark.parametrize(
    ("password", "complaint"),
    [("short1", "too short"), ("password123", "too common"), ("83749261038475", "entirely numeric")],
)
def test_weak_passwords_are_refused(password, complaint):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match=complaint):
        create_user(username="ada", password=password, role=VIEWER)


def test_the_login_page_logs_a_user_in_with_a_session(client, viewer):
    response = client.post("/accounts/login/", {"username": "vera", "password": PASSWORD})

    assert response.status_code == 302
    assert client.get("/api/v1/me/").json()["username"] == "vera"

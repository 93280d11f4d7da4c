"""One JSON error shape everywhere under /api/, whatever layer answers and whatever was sent."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from rest_framework_simplejwt.tokens import AccessToken

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(make_user):
    return {"Authorization": f"Bearer {AccessToken.for_user(make_user('admin'))}"}


def error_of(response) -> dict[str, Any]:
    assert response["Content-Type"] == "application/json"
    body = json.loads(response.content)
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "fields"}
    return body["error"]


@pytest.mark.parametrize("path", ["/api/v1/nothing-here/", "/api/nothing/", "/api/v1/instruments/abc/"])
def test_an_unknown_api_url_is_a_json_404(viewer_client, path):
    response = viewer_client.get(path)

    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_an_unknown_version_is_a_json_404(viewer_client):
    response = viewer_client.get("/api/v9/instruments/")

    assert response.status_code == 404
    assert "version" in error_of(response)["message"]


def test_a_page_outside_the_api_keeps_the_html_404(client):
    response = client.get("/no-such-page")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


def test_a_method_the_endpoint_does_not_take_is_a_json_405_with_allow(client, admin):
    response = client.delete("/api/v1/exchanges/", headers=admin)

    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"
    assert "POST" in response["Allow"]


def test_malformed_json_is_a_400_naming_the_problem(client, admin):
    response = client.post("/api/v1/exchanges/", "{not json", content_type="application/json", headers=admin)

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "parse_error"
    assert "JSON parse error" in error["message"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"])
def test_a_body_that_is_not_json_is_a_415(client, admin, content_type):
    response = client.post("/api/v1/exchanges/", "code=kraken", content_type=content_type, headers=admin)

    assert response.status_code == 415
    assert error_of(response)["code"] == "unsupported_media_type"


def test_asking_for_something_other_than_json_is_a_406(viewer_client):
    response = viewer_client.get("/api/v1/exchanges/", headers={"Accept": "text/html"})

    assert response.status_code == 406
    assert error_of(response)["code"] == "not_acceptable"


def test_invalid_fields_are_each_named(client, admin):
    response = client.post(
        "/api/v1/instruments/",
        {"exchange": "nowhere", "asset_class": "gold"},
        content_type="application/json",
        headers=admin,
    )

    error = error_of(response)
    assert response.status_code == 400
    assert error["code"] == "invalid"
    assert set(error["fields"]) == {"exchange", "symbol", "asset_class"}


@pytest.mark.parametrize(
    ("query", "parameter"),
    [("limit=0", "limit"), ("limit=100000", "limit"), ("offset=-1", "offset"), ("limit=ten", "limit")],
)
def test_bad_pagination_parameters_are_refused(viewer_client, query, parameter):
    response = viewer_client.get(f"/api/v1/exchanges/?{query}")

    assert response.status_code == 400
    assert parameter in error_of(response)["fields"]


def test_a_crash_is_a_json_500_without_details(admin, monkeypatch):
    def crash(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr("market.api.views.ExchangeViewSet.list", crash)
    client = Client(raise_request_exception=False)

    response = client.get("/api/v1/exchanges/", headers=admin)

    assert response.status_code == 500
    error = error_of(response)
    assert error["code"] == "server_error"
    assert "secret" not in error["message"]


def test_not_logged_in_is_401_and_without_the_role_403(client, make_user):
    anonymous = client.get("/api/v1/instruments/")
    client.force_login(make_user())  # logged in, no role
    no_role = client.get("/api/v1/instruments/")

    assert anonymous.status_code == 401
    assert error_of(anonymous)["code"] == "not_authenticated"
    assert no_role.status_code == 403
    assert error_of(no_role)["code"] == "permission_denied"


def test_nul_characters_are_refused_in_bodies_and_query_strings(client, admin, viewer_client):
    body = client.post(
        "/api/v1/instruments/", {"exchange": "\x00", "symbol": "A/B"}, content_type="application/json", headers=admin
    )
    query = viewer_client.get("/api/v1/instruments/?search=%00")

    assert body.status_code == 400
    assert "NUL" in error_of(body)["message"]
    assert query.status_code == 400
    assert "NUL" in error_of(query)["message"]


def test_djangos_own_html_errors_under_the_api_become_json(rf):
    from django.http import HttpResponseNotAllowed

    from cryptostock.api_errors import ApiErrorMiddleware

    middleware = ApiErrorMiddleware(lambda request: HttpResponseNotAllowed(["GET"]))
    api = middleware.process_response(rf.post("/api/v1/somewhere/"), HttpResponseNotAllowed(["GET"]))
    page = middleware.process_response(rf.post("/accounts/logout/"), HttpResponseNotAllowed(["GET"]))

    assert api.status_code == 405
    assert error_of(api)["message"] == "Method POST is not allowed here (allowed: GET)"
    assert api["Allow"] == "GET"
    assert page["Content-Type"].startswith("text/html")


@pytest.fixture
def database_down(transactional_db, settings):
    """The database really unreachable: this connection pointed at a port nobody listens on, then
    restored. PostgreSQL only: the SQLite test database lives in this process's memory, and Django
    keeps that connection open whatever it is told."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("an unreachable database needs a database server")
    saved = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict["PORT"] = 1
    connection.settings_dict["OPTIONS"] = {**saved.get("OPTIONS", {}), "pool": False}
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)


def test_an_unreachable_database_is_a_503_to_retry_not_a_500(database_down_after_login):
    client, headers = database_down_after_login

    response = client.get("/api/v1/instruments/", headers=headers)

    assert response.status_code == 503
    assert error_of(response)["code"] == "unavailable"
    assert response["Retry-After"] == "5"


@pytest.fixture
def database_down_after_login(transactional_db, make_user, request):
    from rest_framework_simplejwt.tokens import AccessToken

    headers = {"Authorization": f"Bearer {AccessToken.for_user(make_user('viewer'))}"}
    request.getfixturevalue("database_down")
    return Client(raise_request_exception=False), headers

"""The chart page as the server renders it: the import map, the API URLs the scripts use, and the
alert form for users whose role may own alerts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders

from accounts.services import create_user

JS_DIR = Path(__file__).resolve().parents[2] / "static" / "market" / "js"
IMPORT = re.compile(r'^import [^;]*? from "([^"]+)";', re.MULTILINE)


def import_map(content: bytes) -> dict[str, str]:
    text = content.decode()
    block = text.split('<script type="importmap"', 1)[1].split(">", 1)[1].split("</script>", 1)[0]
    return json.loads(block)["imports"]


@pytest.fixture
def analyst(db):
    return create_user(username="ana", password="a long test password 7", role="analyst", email="")


def test_every_module_a_script_imports_is_in_the_import_map_and_served(client, db):
    response = client.get("/")

    mapped = import_map(response.content)
    imported = {name for path in JS_DIR.glob("*.js") for name in IMPORT.findall(path.read_text())}
    assert imported, "no imports found: the pattern no longer matches the modules"
    assert imported <= set(mapped), f"not in the import map: {sorted(imported - set(mapped))}"
    for url in mapped.values():
        assert finders.find(url.removeprefix("/static/")), f"{url} is not a static file"


def test_the_page_names_the_indicator_catalogue_and_the_alert_rules_api(client, db):
    content = client.get("/").content.decode()

    assert 'data-catalogue-url="/api/v1/indicators/"' in content
    assert 'data-alert-rules-url="/api/v1/alerts/rules/"' in content
    assert 'data-testid="add-indicator"' in content


def test_anonymous_visitors_get_no_alert_form(client, db):
    content = client.get("/").content.decode()

    assert "data-alert-dialog" not in content
    assert "data-alert-button" not in content


def test_viewers_whose_role_cannot_own_alerts_get_no_alert_form(client, db):
    viewer = create_user(username="vic", password="a long test password 7", role="viewer", email="")
    client.force_login(viewer)

    content = client.get("/").content.decode()

    assert "data-alert-dialog" not in content
    assert "data-alert-button" not in content


def test_analysts_get_the_alert_form_with_a_csrf_token(client, analyst):
    client.force_login(analyst)

    content = client.get("/").content.decode()

    dialog = content.split("data-alert-dialog", 1)[1].split("</dialog>", 1)[0]
    assert 'name="csrfmiddlewaretoken"' in dialog
    assert 'name="level"' in dialog
    assert "data-alert-button" in content

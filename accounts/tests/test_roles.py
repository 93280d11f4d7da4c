"""Roles: the groups the migration makes, giving and changing them, the createuser command, the admin."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command

from accounts.roles import ADMIN, ANALYST, ROLE_PERMISSIONS, ROLES, VIEWER
from accounts.services import set_role, user_roles

pytestmark = pytest.mark.django_db


def granted(group: Group) -> set[str]:
    return {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")}


def test_the_migration_makes_each_role_with_exactly_the_documented_permissions():
    for role in ROLES:
        assert granted(Group.objects.get(name=role)) == set(ROLE_PERMISSIONS[role]), role


def test_a_role_whose_group_was_deleted_is_given_with_a_new_group_of_its_permissions(make_user):
    Group.objects.filter(name__in=ROLES).delete()
    user = make_user(ANALYST)

    assert user_roles(user) == [ANALYST]
    assert granted(Group.objects.get(name=ANALYST)) == set(ROLE_PERMISSIONS[ANALYST])
    assert user.has_perm("accounts.own_backtests")
    assert not Group.objects.filter(name__in=[VIEWER, ADMIN]).exists()  # only the role given is made again


@pytest.mark.parametrize(
    ("role", "allowed", "refused"),
    [
        (VIEWER, ["accounts.read_market_data"], ["accounts.own_alerts", "accounts.manage_instruments"]),
        (ANALYST, ["accounts.read_market_data", "accounts.own_backtests"], ["accounts.manage_users"]),
        (ADMIN, ["accounts.own_exports", "accounts.manage_instruments", "auth.change_user"], ["auth.delete_user"]),
    ],
)
def test_each_role_includes_the_ones_below_it(make_user, role, allowed, refused):
    user = make_user(role)

    assert all(user.has_perm(perm) for perm in allowed)
    assert not any(user.has_perm(perm) for perm in refused)


def test_a_new_role_replaces_the_old_and_admin_brings_staff_status(make_user):
    user = make_user(VIEWER)

    set_role(user, ADMIN)
    assert user_roles(user) == [ADMIN]
    assert user.is_staff
    set_role(user, ANALYST)
    assert user_roles(user) == [ANALYST]
    assert not user.is_staff


def test_an_unknown_role_is_refused(make_user):
    with pytest.raises(ValueError, match="unknown role 'owner'"):
        set_role(make_user(), "owner")


def test_createuser_makes_a_user_with_a_role_reading_the_password_from_stdin(monkeypatch, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-enough-password\n"))
    out = io.StringIO()

    call_command("createuser", "alice", "--role", "analyst", "--email", "a@example.com", "--password-stdin", stdout=out)

    alice = get_user_model().objects.get(username="alice")
    assert user_roles(alice) == [ANALYST]
    assert alice.email == "a@example.com"
    assert alice.check_password("a-long-enough-password")
    assert "Created analyst 'alice'" in out.getvalue()


def test_createuser_refuses_a_weak_password_and_an_existing_user(monkeypatch, make_user):
    monkeypatch.setattr("sys.stdin", io.StringIO("12345\n"))
    with pytest.raises(CommandError, match="too short"):
        call_command("createuser", "bob", "--role", "viewer", "--password-stdin")
    assert not get_user_model().objects.filter(username="bob").exists()

    make_user(VIEWER, username="carol")
    with pytest.raises(CommandError, match="already exists"):
        call_command("createuser", "carol", "--role", "viewer", "--password-stdin")


def test_createuser_refuses_an_unknown_role():
    with pytest.raises(CommandError, match="invalid choice"):
        call_command("createuser", "dave", "--role", "owner", "--password-stdin")


def test_an_admin_gives_roles_in_the_admin_but_cannot_make_superusers(client, make_user):
    admin = make_user(ADMIN)
    viewer = make_user(VIEWER)
    root = get_user_model().objects.create_superuser("root", "root@example.com", None)
    client.force_login(admin)

    changed = client.post(
        "/admin/auth/user/",
        {"action": "make_analyst", "_selected_action": [viewer.pk]},
    )
    edit_page = client.get(f"/admin/auth/user/{viewer.pk}/change/")
    root_page = client.get(f"/admin/auth/user/{root.pk}/change/")

    assert changed.status_code == 302
    assert user_roles(viewer) == [ANALYST]
    assert edit_page.status_code == 200
    assert b'name="is_superuser"' not in edit_page.content  # shown read-only
    assert b'name="groups"' in edit_page.content
    assert root_page.status_code == 200  # view only: the admin role may view users, not change superusers
    assert b'name="username"' not in root_page.content


def test_the_user_list_shows_roles(client, make_user):
    client.force_login(make_user(ADMIN))
    make_user(ANALYST, username="erin")

    page = client.get("/admin/auth/user/")

    assert page.status_code == 200
    assert b"erin" in page.content
    assert b"analyst" in page.content


def test_permissions_are_remembered_briefly_and_forgotten_on_a_role_change(make_user, settings):
    from accounts.capabilities import has_capability
    from accounts.roles import OWN_ALERTS

    settings.CAPABILITY_CACHE_SECONDS = 60
    user = make_user(ANALYST)
    assert has_capability(user, OWN_ALERTS)

    user.groups.clear()  # behind the service's back, as another process would
    assert has_capability(get_user_model().objects.get(pk=user.pk), OWN_ALERTS)  # still remembered

    set_role(user, VIEWER)  # the service forgets
    assert not has_capability(get_user_model().objects.get(pk=user.pk), OWN_ALERTS)


def test_with_no_cache_time_permissions_are_read_every_time(make_user, settings):
    from accounts.capabilities import has_capability
    from accounts.roles import OWN_ALERTS

    settings.CAPABILITY_CACHE_SECONDS = 0
    user = make_user(ANALYST)
    assert has_capability(user, OWN_ALERTS)
    user.groups.clear()

    assert not has_capability(get_user_model().objects.get(pk=user.pk), OWN_ALERTS)

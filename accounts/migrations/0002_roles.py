"""The viewer, analyst and admin roles as groups with their permissions.

A frozen copy of accounts.roles.ROLE_PERMISSIONS as of this migration; later changes to the roles
come as new migrations (a test checks that the groups match accounts.roles).
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

VIEWER = ["accounts.read_market_data"]
ANALYST = [*VIEWER, "accounts.own_alerts", "accounts.own_backtests", "accounts.own_exports"]
ADMIN = [
    *ANALYST,
    "accounts.manage_instruments",
    "accounts.manage_collectors",
    "accounts.manage_users",
    "auth.view_user",
    "auth.add_user",
    "auth.change_user",
    "auth.view_group",
    "market.view_exchange",
    "market.add_exchange",
    "market.change_exchange",
    "market.view_instrument",
    "market.add_instrument",
    "market.change_instrument",
    "market.view_bar",
]
ROLES = {"viewer": VIEWER, "analyst": ANALYST, "admin": ADMIN}


def create_roles(apps, schema_editor):
    # Permissions are normally created after all migrations ran (post_migrate); create them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, permissions in ROLES.items():
        group, _ = Group.objects.get_or_create(name=name)
        for permission in permissions:
            app_label, codename = permission.split(".")
            group.permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("market", "0001_initial"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]

"""The admin role may view arbitrage opportunities in the Django admin (read-only there).

Here rather than in accounts: the permission exists only from market 0009 on, and accounts' roles
migration is a frozen copy of accounts.roles as of its own time (a test checks the groups against
accounts.roles, which lists this permission too).
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

PERMISSION = ("market", "view_arbitrageopportunity")


def grant(apps, schema_editor):
    # Permissions are normally created after all migrations ran (post_migrate); create them now.
    app_config = apps.get_app_config("market")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    permission = Permission.objects.get(content_type__app_label=PERMISSION[0], codename=PERMISSION[1])
    for group in Group.objects.filter(name="admin"):
        group.permissions.add(permission)


def revoke(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for permission in Permission.objects.filter(content_type__app_label=PERMISSION[0], codename=PERMISSION[1]):
        for group in Group.objects.filter(name="admin"):
            group.permissions.remove(permission)


class Migration(migrations.Migration):
    dependencies = [
        ("market", "0009_arbitrage_opportunity"),
        ("accounts", "0002_roles"),
    ]

    operations = [migrations.RunPython(grant, revoke)]

"""The audit trail's sign-in events (accounts.audit), and the admin role may read the trail: these
sign-in events and django-auditlog's change records, both read-only in the Django admin."""

import django.db.models.deletion
from django.conf import settings
from django.contrib.auth.management import create_permissions
from django.db import migrations, models

PERMISSIONS = [("accounts", "view_authevent"), ("auditlog", "view_logentry")]


def grant(apps, schema_editor):
    # Permissions are normally created after all migrations ran (post_migrate); create them now.
    for label in {app_label for app_label, _ in PERMISSIONS}:
        app_config = apps.get_app_config(label)
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    for group in Group.objects.filter(name="admin"):
        group.permissions.add(*_permissions(apps))


def revoke(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    for group in Group.objects.filter(name="admin"):
        group.permissions.remove(*_permissions(apps))


def _permissions(apps):
    Permission = apps.get_model("auth", "Permission")
    return [
        Permission.objects.get(content_type__app_label=app_label, codename=codename)
        for app_label, codename in PERMISSIONS
    ]


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_roles"),
        ("auditlog", "0017_add_actor_email"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="AuthEvent",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("time", models.DateTimeField(auto_now_add=True, db_index=True)),
                (
                    "kind",
                    models.CharField(
                        choices=[
                            ("login", "signed in"),
                            ("login_failed", "sign-in failed"),
                            ("logout", "signed out"),
                            ("token_revoked", "token revoked"),
                            ("throttled", "too many attempts"),
                        ],
                        max_length=16,
                    ),
                ),
                ("via", models.CharField(choices=[("web", "web page"), ("api", "API")], max_length=3)),
                ("username", models.CharField(blank=True, max_length=150)),
                (
                    "address",
                    models.GenericIPAddressField(
                        blank=True, help_text="The client, as the rate limits see it", null=True
                    ),
                ),
                ("user_agent", models.CharField(blank=True, max_length=300)),
                (
                    "user",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="auth_events",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "ordering": ["-time", "-id"],
                "default_permissions": ("view",),
                "indexes": [models.Index(fields=["kind", "-time"], name="authevent_kind_time")],
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(
                            ("kind__in", ["login", "login_failed", "logout", "token_revoked", "throttled"])
                        ),
                        name="authevent_kind",
                    ),
                    models.CheckConstraint(condition=models.Q(("via__in", ["web", "api"])), name="authevent_via"),
                ],
            },
        ),
        migrations.RunPython(grant, revoke),
    ]

"""Create the demo login of the embedded setup once, and print it every time.

The password is random, made on first use and kept in VAR_DIR/demo-login.txt (git-ignored), so
running the demo twice prints the same working login.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

USERNAME = "demo"


def demo_password(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(12)
    path.write_text(password + "\n")
    path.chmod(0o600)
    return password


class Command(BaseCommand):
    help = "Create (or repair) the demo superuser of the embedded setup and print its login."

    def handle(self, *args: Any, **options: Any) -> None:
        password = demo_password(Path(settings.VAR_DIR) / "demo-login.txt")
        user, _ = get_user_model().objects.get_or_create(username=USERNAME)
        if not user.check_password(password) or not user.is_superuser:
            user.set_password(password)
            user.is_staff = user.is_superuser = True
            user.save()
        self.stdout.write(f"Demo login: user {USERNAME!r}, password {password!r}")

"""Create a user with a role: `manage.py createuser alice --role analyst --email alice@example.com`.

The password is asked for twice on a terminal, or read as one line from standard input with
`--password-stdin` (for scripts; never on the command line, where other users could see it).
"""

from __future__ import annotations

import getpass
import sys
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.roles import ROLES
from accounts.services import create_user


class Command(BaseCommand):
    help = "Create a user with a role (viewer, analyst or admin)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--role", required=True, choices=ROLES)
        parser.add_argument("--email", default="")
        parser.add_argument("--password-stdin", action="store_true", help="Read the password from standard input")

    def handle(self, *args: Any, **options: Any) -> None:
        username = options["username"]
        if get_user_model().objects.filter(username=username).exists():
            raise CommandError(f"user {username!r} already exists; change its role in the admin")
        password = self._read_password(options["password_stdin"])
        try:
            create_user(username=username, password=password, role=options["role"], email=options["email"])
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        self.stdout.write(self.style.SUCCESS(f"Created {options['role']} {username!r}"))

    def _read_password(self, from_stdin: bool) -> str:
        if from_stdin:
            password = sys.stdin.readline().rstrip("\n")
        elif sys.stdin.isatty():
            password = getpass.getpass("Password: ")
            if getpass.getpass("Password (again): ") != password:
                raise CommandError("the passwords do not match")
        else:
            raise CommandError("no terminal to ask for the password on; use --password-stdin")
        if not password:
            raise CommandError("the password is empty")
        return password

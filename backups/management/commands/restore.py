"""Restore the database from a backup made by `manage.py backup` (docs/backups.md)."""

from __future__ import annotations

from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from backups.errors import BackupError
from backups.services import restorable_backup, restore, sessions_in_the_way


class Command(BaseCommand):
    help = "Replace the database's contents with a backup's; the backup is verified first."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("backup", type=Path, help="The backup file (see `manage.py backup --list`)")
        parser.add_argument(
            "--into",
            metavar="NAME",
            help="Restore into this other database (PostgreSQL: an existing database's name; SQLite: a file), "
            "e.g. to rehearse a restore without touching the live one",
        )
        parser.add_argument("--yes", action="store_true", help="Do not ask for confirmation")

    def handle(self, *args: Any, **options: Any) -> None:
        path, into = options["backup"], options["into"]
        try:
            backup = restorable_backup(path)  # checked once, before the question (the restore reads the archive)
            self.stdout.write(f"{backup.path.name}: checksum matches")
            target = into or connection.settings_dict["NAME"]
            if in_the_way := sessions_in_the_way(into):
                self.stderr.write(
                    f"{len(in_the_way)} other connections to {target} ({', '.join(sorted(set(in_the_way)))}): "
                    "the restore waits for their locks; stop the web server, collectors and workers first"
                )
            if not options["yes"]:
                self.confirm(f"Replace everything in {target} with {path.name}? Type 'yes' to go on: ")
            restore(backup, into=into)
        except BackupError as error:
            raise CommandError(str(error)) from error
        self.stdout.write(f"restored {target} from {path.name}")

    def confirm(self, question: str) -> None:
        try:
            answer = input(question)
        except EOFError:
            answer = ""
        if answer.strip().lower() != "yes":
            raise CommandError("not restored (pass --yes to restore without the question)")

"""Back up the database into BACKUP_DIR and apply the keep policy; or list or verify backups."""

from __future__ import annotations

from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from backups.errors import BackupError
from backups.services import backup_dir, copy_elsewhere, list_backups, prune_backups, take_backup, verify_backup


class Command(BaseCommand):
    help = (
        "Back up the whole database into BACKUP_DIR, copy it elsewhere (BACKUP_COPY_COMMAND, if set), then "
        "delete the backups BACKUP_KEEP no longer keeps."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        action = parser.add_mutually_exclusive_group()
        action.add_argument("--list", action="store_true", help="List the backups, oldest first, and take none")
        action.add_argument("--verify", type=Path, metavar="FILE", help="Check a backup's checksum and archive")
        parser.add_argument("--no-prune", action="store_true", help="Keep every backup this time")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            if options["list"]:
                self.list()
            elif options["verify"]:
                self.stdout.write(verify_backup(options["verify"]))
            else:
                self.back_up(prune=not options["no_prune"])
        except BackupError as error:
            raise CommandError(str(error)) from error

    def back_up(self, *, prune: bool) -> None:
        backup = take_backup(timezone.now())
        self.stdout.write(f"backup taken: {backup.path}")
        if copy_elsewhere(backup):
            self.stdout.write(f"copied elsewhere by BACKUP_COPY_COMMAND: {settings.BACKUP_COPY_COMMAND}")
        if prune:
            pruned = prune_backups(settings.BACKUP_KEEP)
            for gone in pruned.deleted:
                self.stdout.write(f"deleted by the keep policy ({settings.BACKUP_KEEP}): {gone.path.name}")

    def list(self) -> None:
        backups = list_backups()
        if not backups:
            self.stdout.write(f"no backups in {backup_dir()}")
        for backup in backups:
            self.stdout.write(f"{backup.taken_at:%Y-%m-%d %H:%M:%S} UTC  {backup.size / 1e6:10.1f} MB  {backup.path}")

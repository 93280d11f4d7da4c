"""The copy of a backup elsewhere: BACKUP_COPY_COMMAND, checked when the settings load and run after
each backup (docs/backups.md). Standard library only, since settings.py imports it."""

from __future__ import annotations

import shlex
import string
import subprocess
from collections.abc import Mapping

from backups.errors import BackupError

COPY_PLACEHOLDERS = frozenset({"backup", "checksum", "dir"})


def copy_command_problem(template: str) -> str | None:
    """Why BACKUP_COPY_COMMAND cannot be run, or None. Checked when the settings load."""
    try:
        words = shlex.split(template)
        named = {name for word in words for _, name, _, _ in string.Formatter().parse(word) if name is not None}
    except ValueError as error:
        return str(error)
    if unknown := named - COPY_PLACEHOLDERS:
        return f"unknown placeholders {sorted(unknown)}; known: {sorted(COPY_PLACEHOLDERS)}"
    return None


def run_copy_command(template: str, values: Mapping[str, str], *, timeout: float) -> None:
    """The template split like a shell would, each word's placeholders filled in, run without a
    shell: a file name can never become part of a command."""
    arguments = [word.format_map(values) for word in shlex.split(template)]
    try:
        finished = subprocess.run(arguments, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise BackupError(f"the copy command {arguments[0]!r} was not found (BACKUP_COPY_COMMAND)") from None
    except subprocess.TimeoutExpired:
        raise BackupError(f"the copy command took longer than {timeout:g} s (BACKUP_COPY_TIMEOUT)") from None
    if finished.returncode != 0:
        output = (finished.stderr or finished.stdout).strip()
        raise BackupError(f"the copy command failed with exit status {finished.returncode}: {output}")

"""Smoke-test a running deployment from the outside: `manage.py smoke https://markets.example.com`.

Checks /health, /ready, a sign-in (with `--username` and the password on standard input), the
instrument list, the newest bar, a WebSocket snapshot, the API schema and /metrics, and prints one
line per check. Exits 1 if any failed; a check that cannot run here (no sign-in, /metrics not
allowed from this address) is skipped, not failed. Needs no database: it is a client.
"""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from market.smoke import FAILED, OK, Smoke


class Command(BaseCommand):
    help = "Check a running deployment through its HTTP API and WebSocket (exit 1 if a check fails)."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("url", help="The site's base URL, e.g. http://127.0.0.1:8000")
        parser.add_argument("--username", help="Sign in as this user (the password is read from standard input)")
        parser.add_argument("--password-stdin", action="store_true", help="Read the password from standard input")
        parser.add_argument("--timeout", type=float, default=10.0, help="Seconds per request (default 10)")

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["url"].startswith(("http://", "https://")):
            raise CommandError(f"{options['url']!r}: expected a URL starting with http:// or https://")
        password = None
        if options["username"]:
            if not options["password_stdin"]:
                raise CommandError("--username needs --password-stdin (a password on the command line is visible)")
            password = sys.stdin.readline().rstrip("\n")
        failed = 0
        for check in Smoke(options["url"], timeout=options["timeout"]).run(options["username"], password):
            style = {OK: self.style.SUCCESS, FAILED: self.style.ERROR}.get(check.outcome, self.style.WARNING)
            self.stdout.write(f"{style(f'{check.outcome:<8}')}{check.name:<12}{check.ms:7.0f} ms  {check.detail}")
            failed += check.outcome == FAILED
        if failed:
            raise CommandError(f"{failed} check(s) failed")

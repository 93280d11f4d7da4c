"""Serve the product with daphne, optionally with a collector in the same process.

With the in-process channel layer (no REDIS_URL) a collector can only reach browsers from inside the
web server's process, so the embedded setup runs both on daphne's event loop. With Redis, run
`collect` as its own process instead (docker-compose does).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from market.collector import prepare_process
from market.management.commands.collect import add_collector_arguments, build_collector

log = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Run the web server (daphne); with --collect SOURCE also a collector in the same process."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        add_collector_arguments(parser, flag="--collect", required=False)
        parser.add_argument(
            "--rollup",
            action=argparse.BooleanOptionalAction,
            default=not settings.REDIS_URL,
            help="Roll bars up to higher timeframes every minute in this process "
            "(default: on without REDIS_URL, where there is no Celery beat)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # daphne.server installs Twisted's asyncio reactor on import; it must come before twisted.
        from daphne.server import twisted_loop
        from twisted.internet import defer, reactor

        from cryptostock.asgi import application
        from cryptostock.daphne_server import FlowControlledServer

        jobs: list[Callable[[], Coroutine[Any, Any, Any]]] = []
        if options["source"]:
            jobs.append(build_collector(options).run)
            prepare_process()
        if options["rollup"]:
            from market.rollup import roll_up_periodically

            jobs.append(roll_up_periodically)
        tasks: list[asyncio.Task[Any]] = []

        def start_jobs() -> None:
            tasks.extend(twisted_loop.create_task(job()) for job in jobs)

        def stop_jobs() -> defer.Deferred[Any] | None:
            running = [task for task in tasks if not task.done()]
            for task in running:
                task.cancel()
            if not running:
                return None
            # Shutdown waits for them: the collector stores its open bars before it exits.
            gathered = asyncio.gather(*running, return_exceptions=True)
            return defer.Deferred.fromFuture(gathered)

        reactor.callWhenRunning(start_jobs)
        # Twisted's interface stubs declare this without `self`, which shifts mypy's argument count.
        reactor.addSystemEventTrigger("before", "shutdown", stop_jobs)  # type: ignore[arg-type]

        endpoint = f"tcp:port={options['port']}:interface={options['host']}"
        self.stdout.write(f"cryptostock is serving at http://{options['host']}:{options['port']}/", self.style.SUCCESS)
        FlowControlledServer(application=application, endpoints=[endpoint], signal_handlers=True).run()

"""Serve the product with daphne, optionally with a collector in the same process.

With the in-process channel layer (no REDIS_URL) a collector can only reach browsers from inside the
web server's process, so the embedded setup runs both on daphne's event loop. With Redis, run
`collect` as its own process instead (docker-compose does).
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from market.management.commands.collect import add_collector_arguments, build_collector

log = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Run the web server (daphne); with --collect SOURCE also a collector in the same process."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        add_collector_arguments(parser, flag="--collect", required=False)

    def handle(self, *args: Any, **options: Any) -> None:
        # daphne.server installs Twisted's asyncio reactor on import; it must come before twisted.
        from daphne.server import Server, twisted_loop
        from twisted.internet import defer, reactor

        from cryptostock.asgi import application

        if options["source"]:
            collector = build_collector(options)
            state: dict[str, Any] = {}

            def start_collector() -> None:
                state["task"] = twisted_loop.create_task(collector.run())

            def stop_collector() -> defer.Deferred[Any] | None:
                task = state.get("task")
                if task is None or task.done():
                    return None
                task.cancel()
                return defer.Deferred.fromFuture(task).addErrback(lambda failure: None)

            reactor.callWhenRunning(start_collector)
            # Twisted's interface stubs declare this without `self`, which shifts mypy's argument count.
            reactor.addSystemEventTrigger("before", "shutdown", stop_collector)  # type: ignore[arg-type]

        endpoint = f"tcp:port={options['port']}:interface={options['host']}"
        self.stdout.write(f"cryptostock is serving at http://{options['host']}:{options['port']}/", self.style.SUCCESS)
        Server(application=application, endpoints=[endpoint], signal_handlers=True).run()

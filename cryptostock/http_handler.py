"""Django's ASGI handler with one trip to a worker thread per request instead of one per middleware hook.

Under ASGI, Django builds the middleware chain for the event loop. Every middleware here is a
`MiddlewareMixin` (Django's own, CORS, whitenoise, ours), whose async mode runs each of its hooks
through `sync_to_async`, and the views (DRF's, the pages) are synchronous: a bars request crossed
between the loop and a worker thread about a dozen times, each crossing a wake-up of the loop and
a hand-over of the GIL. This handler builds the chain as under WSGI and runs the whole of it,
middleware and view, in one `sync_to_async` call: the same thread Django would use for the
request's sync work (thread-sensitive, so database connections are the ones the request-finished
signal closes), entered once.

Each request also used to get a new thread, and a second one to join the first when it ended:
asgiref's per-request `ThreadSensitiveContext` makes a new single-thread executor per request and
shuts it down afterwards. Here the request's context is given an executor from an idle list and
hands it back when the request is done, so threads are reused as a WSGI server's are (Django closes
the request's database connections when it finishes, whichever thread ran it).

Async views still work: Django's synchronous chain runs them with `async_to_sync`. Nothing here
serves async views better than Django does; there are none on this path (WebSockets go through
Channels, not this handler).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpRequest, HttpResponseBase

# Idle request threads kept for reuse; a burst beyond this many concurrent requests makes threads
# that are let go afterwards.
MAX_IDLE_THREADS = 32


class SyncChainASGIHandler(ASGIHandler):
    def __init__(self) -> None:
        super().__init__()
        self._idle: list[ThreadPoolExecutor] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        executor = self._idle.pop() if self._idle else ThreadPoolExecutor(1, thread_name_prefix="http-request")
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        finally:
            if len(self._idle) < MAX_IDLE_THREADS:
                self._idle.append(executor)
            else:
                executor.shutdown(wait=False)

    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        response: Any = await sync_to_async(self.get_response, thread_sensitive=True)(request)
        return response


def get_http_application() -> SyncChainASGIHandler:
    """What `django.core.asgi.get_asgi_application` does, with this handler."""
    import django

    django.setup(set_prefix=False)
    return SyncChainASGIHandler()

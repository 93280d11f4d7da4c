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

Django's own `handle` also went to the thread twice more per request, to send `request_started`
before the chain and to close the response after it was sent (both signals' receivers are
synchronous: reset_queries, close_old_connections). Here the signal, the request object, the chain
and, for a response whose body is already in memory, its `close()` (`request_finished`: the database
connection goes back to the pool) are one trip; the body is then sent as one message instead of 64 KB
chunks. Streaming responses (static files) are sent as Django sends them, with a task listening for
the client going away, and closed afterwards.

Async views still work: Django's synchronous chain runs them with `async_to_sync`. Nothing here
serves async views better than Django does; there are none on this path (WebSockets go through
Channels, not this handler).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import FileResponse, HttpRequest, HttpResponseBase
from django.urls import set_script_prefix

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

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        response: Any = await sync_to_async(self.respond, thread_sensitive=True)(scope, body_file)
        try:
            if response.streaming:
                await self.send_streaming(response, receive, send)
            else:
                await self.send_response(response, send)
        finally:
            body_file.close()

    def respond(self, scope: dict[str, Any], body_file: IO[bytes]) -> HttpResponseBase:
        """In the request's thread: what Django's `handle` does around sending, in one trip."""
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, error_response = self.create_request(scope, body_file)
        response: Any = error_response if request is None else self.get_response(request)
        response._handler_class = self.__class__
        if isinstance(response, FileResponse):
            response.block_size = self.chunk_size  # as Django's handler does: the server chunks further
        if not response.streaming:
            # The body is in memory: closing now (request_finished) gives the database connection
            # back before the bytes go out, as a WSGI server would right after them.
            response.close()
        return response

    async def send_streaming(self, response: Any, receive: Any, send: Any) -> None:
        """Django's way for a streaming body: stop sending if the client goes away; close it either way."""
        listener = asyncio.create_task(self.listen_for_disconnect(receive))
        sender = asyncio.create_task(self.send_response(response, send))
        try:
            await asyncio.wait([listener, sender], return_when=asyncio.FIRST_COMPLETED)
            for task in (listener, sender):
                if not task.done():
                    task.cancel()
                with contextlib.suppress(asyncio.CancelledError, RequestAborted):
                    await task
        finally:
            await sync_to_async(response.close, thread_sensitive=True)()

    @classmethod
    def chunk_bytes[T](cls, data: Sequence[T]) -> Iterator[tuple[Sequence[T], bool]]:
        """A body in one message: it is in memory already, and the server writes it to the socket in
        one call instead of one per 64 KB (daphne: a write, a header check and a log test each)."""
        yield data, True


def get_http_application() -> SyncChainASGIHandler:
    """What `django.core.asgi.get_asgi_application` does, with this handler."""
    import django

    django.setup(set_prefix=False)
    return SyncChainASGIHandler()

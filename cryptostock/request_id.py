"""A request id on every request, its log lines, the tasks it queues and its audit entries.

Each HTTP request gets an id: the `X-Request-ID` a proxy in front set (nginx's `$request_id`, an
ingress's), when it looks like one, or a new random one. It is sent back in the response's
`X-Request-ID`, added to every log line written while the request is served (`request_id` in
JSON logs, `[request <id>]` at the end of plain ones), passed to the Celery tasks the request
queues (a task header), so the worker's lines carry it too, and stored as the correlation id of
the audit trail's change records (auditlog's `cid`). One id then finds a request's whole story: the
proxy's access log, the web server's lines, the worker's, and what it changed.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from django.http import HttpRequest, HttpResponse

HEADER = "X-Request-ID"
# What an id from a proxy may look like: a UUID, nginx's 32 hex digits, or similar; anything else
# (too long, spaces, quotes) is replaced, so that a client cannot write what it likes into the logs.
_ACCEPTED = re.compile(r"[A-Za-z0-9._:-]{8,64}")

_current: ContextVar[str | None] = ContextVar("request_id", default=None)


def current_request_id() -> str | None:
    """The id of the request (or task) being served, if any: auditlog's AUDITLOG_CID_GETTER."""
    return _current.get()


def accepted_or_new(candidate: str | None) -> str:
    if candidate and _ACCEPTED.fullmatch(candidate):
        return candidate
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """First in the chain, so that every later middleware's log lines carry the id."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = accepted_or_new(request.headers.get(HEADER))
        token = _current.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            _current.reset(token)
        response[HEADER] = request_id
        return response


class RequestIdFilter(logging.Filter):
    """Gives every record `request_id` (None outside a request) and `request_tag`, the plain
    format's ` [request <id>]` or nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = _current.get()
        record.request_id = request_id
        record.request_tag = f" [request {request_id}]" if request_id else ""
        return True


# Celery: the id travels as a task header (connected in cryptostock.celery).


def add_request_id_header(headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    """before_task_publish: a task queued while a request is served carries the request's id."""
    request_id = _current.get()
    if request_id and headers is not None:
        headers.setdefault("request_id", request_id)


def enter_task(task: Any = None, **kwargs: Any) -> None:
    """task_prerun: the task's lines carry the id of the request that queued it."""
    request_id = getattr(getattr(task, "request", None), "request_id", None)
    # An eager task (the embedded setup) runs inside the request itself: it keeps the request's id.
    keep = request_id if isinstance(request_id, str) else _current.get()
    task._request_id_token = _current.set(keep)


def leave_task(task: Any = None, **kwargs: Any) -> None:
    """task_postrun."""
    token = getattr(task, "_request_id_token", None)
    if token is not None:
        try:
            _current.reset(token)
        except ValueError:  # set in another context (an eager task run inside a request)
            _current.set(None)
        task._request_id_token = None

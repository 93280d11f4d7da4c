"""Views for test_http_stack: a streaming response and one with a body in memory, counted."""

from __future__ import annotations

from collections.abc import Iterator

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.urls import path

CLOSED: list[str] = []


class CountedStreamingResponse(StreamingHttpResponse):
    def close(self) -> None:
        CLOSED.append("streaming")
        super().close()


def parts() -> Iterator[bytes]:
    yield b"first,"
    yield b"second"


def streaming(request: HttpRequest) -> StreamingHttpResponse:
    return CountedStreamingResponse(parts(), content_type="text/plain")


def big(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"x" * 200_000, content_type="text/plain")


urlpatterns = [path("streaming", streaming), path("big", big)]

"""An ASGI application that streams 40 MB in 1 MB pieces, each a new object (for the web server's
flow-control test: what the server holds for a slow client shows in its resident memory)."""

from __future__ import annotations

from typing import Any

PIECES = 40
PIECE_BYTES = 1_000_000


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    for number in range(PIECES):
        piece = (b"%07d\n" % number) * (PIECE_BYTES // 8)
        await send({"type": "http.response.body", "body": piece, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})

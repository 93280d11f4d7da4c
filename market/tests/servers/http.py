"""Local servers on 127.0.0.1 with free ports, started and stopped inside a test's loop: a small
aiohttp server, and the lifecycle the exchange replay servers share (a websocket that replays
recorded messages from a cursor, plus a REST side)."""

from __future__ import annotations

import asyncio
from typing import Any, Self

import websockets
from aiohttp import web
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response


class LocalHttpServer:
    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> str:
        self.runner = web.AppRunner(self.app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


class ReplayServer:
    """Websocket + REST replay of one exchange's recorded traffic; subclasses speak the protocol.

    `cursor` is the next recorded message; `advance` moves the market on without anyone hearing it
    (the client is away). Subclasses set their own state, then call `super().__init__()`.
    """

    #: Path the websocket URL ends with (the exchange's own stream path, where the client adds none).
    ws_path = ""

    def __init__(self) -> None:
        self.cursor = 0
        self.attempts = 0
        self.connections = 0
        self.rest_requests: list[str] = []
        self._moved = asyncio.Event()
        self._ws_server: Any = None
        self._http = LocalHttpServer(self._rest_app())
        self.ws_url = ""
        self.rest_url = ""

    def _replay_length(self) -> int:
        raise NotImplementedError

    def _rest_app(self) -> web.Application:
        raise NotImplementedError

    async def _handle(self, ws: ServerConnection) -> None:
        raise NotImplementedError

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        raise NotImplementedError

    @property
    def finished(self) -> bool:
        return self.cursor >= self._replay_length()

    async def start(self) -> Self:
        self._ws_server = await websockets.serve(
            self._handle, "127.0.0.1", 0, process_request=self._process_request, ping_interval=None
        )
        port = self._ws_server.sockets[0].getsockname()[1]
        self.ws_url = f"ws://127.0.0.1:{port}{self.ws_path}"
        self.rest_url = await self._http.start()
        return self

    async def stop(self) -> None:
        if self._ws_server is not None:
            self._ws_server.close()
            await self._ws_server.wait_closed()
        await self._http.stop()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def advance(self, count: int) -> None:
        """Messages happen without reaching anyone (the client is away)."""
        self.cursor = min(self._replay_length(), self.cursor + count)
        self._moved.set()

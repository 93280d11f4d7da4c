"""A smoke test of a running deployment, from the outside: what `manage.py smoke URL` checks.

It talks to the server only through its public interfaces (HTTP and the WebSocket), as a client
would, so it checks the deployment (proxy, TLS, hosts, Redis, database, collectors), not this
checkout. Each check gives ok, failed or skipped (with why), and how long it took.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import requests
from websockets.sync.client import connect as ws_connect

OK, FAILED, SKIPPED = "ok", "FAILED", "skipped"


@dataclass(frozen=True)
class Check:
    name: str
    outcome: str
    detail: str
    ms: float


class Skip(Exception):
    """The check cannot run here (not signed in, no instrument yet); not a failure."""


class Failed(Exception):
    """The check ran and the deployment answered wrongly."""


class Smoke:
    def __init__(self, base_url: str, *, timeout: float = 10.0, session: requests.Session | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.http = session or requests.Session()
        self.token: str | None = None
        self.instrument: dict[str, Any] | None = None

    def run(self, username: str | None = None, password: str | None = None) -> Iterator[Check]:
        """Every check in order; later ones use what earlier ones found (the token, an instrument)."""
        checks: list[tuple[str, Callable[[], str]]] = [
            ("health", self.health),
            ("ready", self.ready),
            ("sign-in", lambda: self.sign_in(username, password)),
            ("instruments", self.instruments),
            ("bars", self.bars),
            ("websocket", self.websocket),
            ("schema", self.schema),
            ("metrics", self.metrics),
        ]
        unreachable = False
        for name, check in checks:
            started = time.perf_counter()
            try:
                if unreachable:
                    raise Skip("the server did not answer")
                outcome, detail = OK, check()
            except Skip as why:
                outcome, detail = SKIPPED, str(why)
            except Failed as why:
                outcome, detail = FAILED, str(why)
            except requests.ConnectionError as exc:
                unreachable = name == "health"
                outcome, detail = FAILED, f"cannot connect to {self.base_url}: {_root_cause(exc)}"
            except Exception as exc:  # a check that breaks is a failed check, and the next ones still run
                outcome, detail = FAILED, f"{exc.__class__.__name__}: {exc}"
            yield Check(name, outcome, detail, (time.perf_counter() - started) * 1000)

    def health(self) -> str:
        body = self._get_json("/health", expect=200)
        return f"status {body.get('status')}"

    def ready(self) -> str:
        response = self._get("/ready")
        body = response.json()
        if response.status_code != 200:
            failing = {name: body["components"][name] for name in body.get("failing", [])}
            raise Failed(f"{response.status_code}, failing: {json.dumps(failing)}")
        return ", ".join(f"{name} {state}" for name, state in body["components"].items())

    def sign_in(self, username: str | None, password: str | None) -> str:
        if not username:
            raise Skip("no --username: reads below are anonymous")
        response = self.http.post(
            self._url("/api/v1/auth/token/"),
            json={"username": username, "password": password or ""},
            timeout=self.timeout,
        )
        if response.status_code != 200:
            raise Failed(f"{response.status_code}: {_error_message(response)}")
        self.token = response.json()["access"]
        return f"signed in as {username}"

    def instruments(self) -> str:
        body = self._get_json("/api/v1/instruments/", {"active": "true", "limit": 100}, expect=200)
        if not body["results"]:
            raise Failed("no active instrument: add some in the admin or the API")
        self.instrument = body["results"][0]
        return f"{body['count']} active, e.g. {self.instrument['symbol']} on {self.instrument['exchange']}"

    def bars(self) -> str:
        instrument = self._need_instrument()
        query = {"instrument": instrument["id"], "timeframe": "1m", "limit": 1, "order": "desc"}
        rows = self._get_json("/api/v1/bars/", query, expect=200)["bars"]
        if not rows:
            return f"{instrument['symbol']}: no 1m bars yet"
        newest = datetime.fromtimestamp(rows[0]["time"], UTC)
        return f"{instrument['symbol']}: newest 1m bar {newest:%Y-%m-%d %H:%M} UTC"

    def websocket(self) -> str:
        instrument = self._need_instrument()
        query = {"token": self.token} if self.token else {}
        with ws_connect(self._ws_url("/ws/v1/market/", query), open_timeout=self.timeout) as socket:
            socket.send(json.dumps({"action": "subscribe", "instrument": instrument["id"], "timeframe": "1m"}))
            deadline = time.monotonic() + self.timeout
            while True:
                frame = json.loads(socket.recv(timeout=max(0.01, deadline - time.monotonic())))
                if frame.get("type") == "snapshot":
                    return f"snapshot of {len(frame['bars'])} bars"
                if frame.get("type") == "error":
                    raise Failed(f"error frame: {frame.get('code')}: {frame.get('message')}")

    def schema(self) -> str:
        response = self._get("/api/schema/", headers={"Accept": "application/json"})
        if response.status_code == 401:
            raise Skip("needs a sign-in here (API_DOCS_PUBLIC is off)")
        if response.status_code != 200:
            raise Failed(f"{response.status_code}")
        return f"{len(response.content) // 1024} KiB"

    def metrics(self) -> str:
        response = self._get("/metrics")
        if response.status_code == 403:
            raise Skip("not allowed from this address (METRICS_ALLOWED_NETWORKS)")
        if response.status_code != 200:
            raise Failed(f"{response.status_code}")
        families = sum(1 for line in response.text.splitlines() if line.startswith("# TYPE "))
        return f"{families} metric families"

    def _need_instrument(self) -> dict[str, Any]:
        if self.instrument is None:
            raise Skip("no instrument to read (see the instruments check)")
        return self.instrument

    def _get(self, path: str, query: dict[str, Any] | None = None, **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}))
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return self.http.get(self._url(path), params=query, headers=headers, timeout=self.timeout, **kwargs)

    def _get_json(self, path: str, query: dict[str, Any] | None = None, *, expect: int) -> Any:
        response = self._get(path, query)
        if response.status_code in (401, 403) and not self.token:
            raise Failed(f"{response.status_code}: sign in with --username and --password-stdin")
        if response.status_code != expect:
            raise Failed(f"{response.status_code}: {_error_message(response)}")
        return response.json()

    def _url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def _ws_url(self, path: str, query: dict[str, str]) -> str:
        parts = urlsplit(self.base_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + path, urlencode(query), ""))


def _error_message(response: requests.Response) -> str:
    try:
        return str(response.json().get("error", {}).get("message") or response.text[:200])
    except ValueError:
        return response.text[:200]


def _root_cause(exc: BaseException) -> str:
    """The innermost reason of a connection error ("Connection refused"), not urllib3's whole story."""
    while exc.__context__ is not None or exc.__cause__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    text = str(exc)
    return text.split("] ", 1)[-1] if "] " in text else text

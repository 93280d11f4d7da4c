"""HTTP delivery channels: webhook, Telegram Bot API, Slack Web API. Network I/O only: no Django.

Each sender makes one attempt and either returns the HTTP status or raises `DeliveryError`, which
says whether trying again later could help (network trouble, timeouts, 429 and 5xx) or not (other
4xx, an API that answers "not ok"). Retrying is the caller's business (a Celery task with backoff).
Base URLs are parameters, so tests point them at a local server speaking the same protocol.

Unless `allow_private` is given, requests go to public addresses only (see `alerts.destinations`):
the URL is checked before the request, and the address actually connected to before anything is
sent. A refused destination fails for good.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from alerts.destinations import BlockedDestination, destination_error, refusal_for_address
from alerts.signing import DELIVERY_HEADER, signature_headers

USER_AGENT = "cryptostock-alerts/1"
MAX_ERROR_TEXT = 500


class DeliveryError(Exception):
    def __init__(self, message: str, *, retryable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            return None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirected POST would silently turn into a GET without the body: report it instead.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class _PublicPeerOnly:
    """Connections that refuse a peer address alerts may not reach, checked after connecting (the
    address the name resolved to this time) and before a byte of the request is sent."""

    sock: Any

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        reason = refusal_for_address(str(self.sock.getpeername()[0]))
        if reason is not None:
            self.sock.close()
            raise BlockedDestination(f"refused to connect: {reason}")


class _PublicHTTPConnection(_PublicPeerOnly, http.client.HTTPConnection):
    pass


class _PublicHTTPSConnection(_PublicPeerOnly, http.client.HTTPSConnection):
    pass


class _PublicHTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(_PublicHTTPConnection, req)


class _PublicHTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(_PublicHTTPSConnection, req, context=self._context)  # type: ignore[attr-defined]


_public_opener = urllib.request.build_opener(_NoRedirect, _PublicHTTPHandler, _PublicHTTPSHandler)
_any_opener = urllib.request.build_opener(_NoRedirect)


def post_json(
    url: str, body: bytes, *, headers: dict[str, str], timeout: float, allow_private: bool = False
) -> HttpResponse:
    """POST a JSON body; any answer with a status comes back, network failures raise DeliveryError
    (retryable), a destination that is not allowed too (not retryable)."""
    refused = destination_error(url, allow_private=allow_private)
    if refused is not None:
        raise DeliveryError(f"{url}: {refused}", retryable=False)
    opener = _any_opener if allow_private else _public_opener
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers},
    )
    try:
        with opener.open(request, timeout=timeout) as response:
            return HttpResponse(response.status, response.read())
    except urllib.error.HTTPError as exc:
        return HttpResponse(exc.code, exc.read() or b"")
    except BlockedDestination as exc:
        raise DeliveryError(f"{url}: {exc}", retryable=False) from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, BlockedDestination):
            raise DeliveryError(f"{url}: {exc.reason}", retryable=False) from exc
        raise DeliveryError(f"could not reach {url}: {exc.reason}", retryable=True) from exc
    except (TimeoutError, OSError) as exc:
        raise DeliveryError(f"could not reach {url}: {exc}", retryable=True) from exc


def check_status(response: HttpResponse) -> int:
    """The status if 2xx; otherwise a DeliveryError, retryable for 429 and 5xx."""
    if 200 <= response.status < 300:
        return response.status
    text = response.body[:MAX_ERROR_TEXT].decode(errors="replace")
    retryable = response.status == 429 or response.status >= 500
    raise DeliveryError(f"HTTP {response.status}: {text}", retryable=retryable, status=response.status)


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def send_webhook(
    url: str,
    secret: str,
    payload: dict[str, Any],
    *,
    delivery_id: int,
    timestamp: int,
    timeout: float,
    allow_private: bool = False,
) -> int:
    body = encode(payload)
    headers = {**signature_headers(secret, timestamp, body), DELIVERY_HEADER: str(delivery_id)}
    return check_status(post_json(url, body, headers=headers, timeout=timeout, allow_private=allow_private))


def send_telegram(
    api_url: str, token: str, chat_id: str, text: str, *, timeout: float, allow_private: bool = False
) -> int:
    """Bot API sendMessage: POST {api_url}/bot<token>/sendMessage -> {"ok": true, ...}."""
    if not token:
        raise DeliveryError("no Telegram bot token configured (ALERTS_TELEGRAM_BOT_TOKEN)", retryable=False)
    url = f"{api_url.rstrip('/')}/bot{token}/sendMessage"
    body = encode({"chat_id": chat_id, "text": text})
    response = post_json(url, body, headers={}, timeout=timeout, allow_private=allow_private)
    status = check_status(response)
    answer = response.json()
    if not (isinstance(answer, dict) and answer.get("ok")):
        raise DeliveryError(f"Telegram answered {answer!r}", retryable=False, status=status)
    return status


def send_slack(
    api_url: str, token: str, channel: str, text: str, *, timeout: float, allow_private: bool = False
) -> int:
    """Web API chat.postMessage: HTTP 200 with {"ok": false, "error": ...} on failure."""
    if not token:
        raise DeliveryError("no Slack bot token configured (ALERTS_SLACK_BOT_TOKEN)", retryable=False)
    url = f"{api_url.rstrip('/')}/chat.postMessage"
    headers = {"Authorization": f"Bearer {token}"}
    body = encode({"channel": channel, "text": text})
    response = post_json(url, body, headers=headers, timeout=timeout, allow_private=allow_private)
    status = check_status(response)
    answer = response.json()
    if not (isinstance(answer, dict) and answer.get("ok")):
        error = answer.get("error") if isinstance(answer, dict) else answer
        raise DeliveryError(f"Slack answered error {error!r}", retryable=error == "ratelimited", status=status)
    return status

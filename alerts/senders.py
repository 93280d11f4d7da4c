"""HTTP delivery channels: webhook, Telegram Bot API, Slack Web API. Network I/O only: no Django.

Each sender makes one attempt and either returns the HTTP status or raises `DeliveryError`, which
says whether trying again later could help (network trouble, timeouts, 429 and 5xx) or not (other
4xx, an API that answers "not ok"). Retrying is the caller's business (a Celery task with backoff).
Base URLs are parameters, so tests point them at a local server speaking the same protocol.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

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


_opener = urllib.request.build_opener(_NoRedirect)


def post_json(url: str, body: bytes, *, headers: dict[str, str], timeout: float) -> HttpResponse:
    """POST a JSON body; any answer with a status comes back, network failures raise DeliveryError."""
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers},
    )
    try:
        with _opener.open(request, timeout=timeout) as response:
            return HttpResponse(response.status, response.read())
    except urllib.error.HTTPError as exc:
        return HttpResponse(exc.code, exc.read() or b"")
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DeliveryError(f"could not reach {url}: {reason}", retryable=True) from exc


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
    url: str, secret: str, payload: dict[str, Any], *, delivery_id: int, timestamp: int, timeout: float
) -> int:
    body = encode(payload)
    headers = {**signature_headers(secret, timestamp, body), DELIVERY_HEADER: str(delivery_id)}
    return check_status(post_json(url, body, headers=headers, timeout=timeout))


def send_telegram(api_url: str, token: str, chat_id: str, text: str, *, timeout: float) -> int:
    """Bot API sendMessage: POST {api_url}/bot<token>/sendMessage -> {"ok": true, ...}."""
    if not token:
        raise DeliveryError("no Telegram bot token configured (ALERTS_TELEGRAM_BOT_TOKEN)", retryable=False)
    url = f"{api_url.rstrip('/')}/bot{token}/sendMessage"
    response = post_json(url, encode({"chat_id": chat_id, "text": text}), headers={}, timeout=timeout)
    status = check_status(response)
    answer = response.json()
    if not (isinstance(answer, dict) and answer.get("ok")):
        raise DeliveryError(f"Telegram answered {answer!r}", retryable=False, status=status)
    return status


def send_slack(api_url: str, token: str, channel: str, text: str, *, timeout: float) -> int:
    """Web API chat.postMessage: HTTP 200 with {"ok": false, "error": ...} on failure."""
    if not token:
        raise DeliveryError("no Slack bot token configured (ALERTS_SLACK_BOT_TOKEN)", retryable=False)
    url = f"{api_url.rstrip('/')}/chat.postMessage"
    headers = {"Authorization": f"Bearer {token}"}
    response = post_json(url, encode({"channel": channel, "text": text}), headers=headers, timeout=timeout)
    status = check_status(response)
    answer = response.json()
    if not (isinstance(answer, dict) and answer.get("ok")):
        error = answer.get("error") if isinstance(answer, dict) else answer
        raise DeliveryError(f"Slack answered error {error!r}", retryable=error == "ratelimited", status=status)
    return status

"""Origin checking for WebSockets that lets non-browser clients in.

A browser always sends `Origin`, so checking it against ALLOWED_HOSTS stops another site's page from
opening a socket with the user's cookies. Scripts and bots (Python `websockets`, wscat) send no
Origin and carry no victim's cookies, so a missing Origin is allowed; a wrong one is refused.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import ParseResult

from channels.security.websocket import OriginValidator
from django.conf import settings


class BrowserOriginValidator(OriginValidator):
    def valid_origin(self, parsed_origin: ParseResult | None) -> bool:
        if parsed_origin is None:
            return True
        return bool(self.validate_origin(parsed_origin))


def browser_origin_validator(application: Any) -> BrowserOriginValidator:
    allowed_hosts = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed_hosts:
        allowed_hosts = ["localhost", "127.0.0.1", "[::1]"]
    return BrowserOriginValidator(application, allowed_hosts)

"""Who may open a server-rendered page: the same capabilities as the API, checked for the session.

Not logged in: the login page, coming back afterwards. Logged in without the capability: the 403
page (templates/403.html), which says what the role lacks.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

from accounts.capabilities import has_capability

type PageView = Callable[..., HttpResponse]


def page_requires(capability: str, *, public_setting: str | None = None) -> Callable[[PageView], PageView]:
    """Only for users whose role grants `capability`; anyone may read it when the boolean setting
    named `public_setting` is on (PUBLIC_MARKET_DATA for read-only market pages)."""

    def decorate(view: PageView) -> PageView:
        @wraps(view)
        def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if public_setting is not None and getattr(settings, public_setting):
                return view(request, *args, **kwargs)
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not has_capability(request.user, capability):
                raise PermissionDenied("Your role does not allow this page.")
            return view(request, *args, **kwargs)

        return checked

    return decorate


def can(user: Any, capability: str) -> bool:
    return bool(user.is_authenticated and has_capability(user, capability))

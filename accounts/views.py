"""Login and logout pages of the web UI (session authentication)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse

from accounts.services import record_throttled_once
from cryptostock.api_ratelimit import retry_after


class LoginView(auth_views.LoginView):
    """Django's login page, with the token endpoints' limit on attempts per client IP."""

    template_name = "accounts/login.html"
    redirect_authenticated_user = True

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        wait = retry_after(request, "auth")
        if wait is not None:
            record_throttled_once(request, wait, username=request.POST.get("username", ""))
            response = HttpResponse(
                f"Too many login attempts; try again in {wait} seconds.\n", status=429, content_type="text/plain"
            )
            response["Retry-After"] = str(wait)
            return response
        return super().post(request, *args, **kwargs)

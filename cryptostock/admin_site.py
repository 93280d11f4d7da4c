"""The project's admin site: Django's, plus the pages of models it cannot register.

Bars have a composite primary key, which ModelAdmin refuses (ImproperlyConfigured), so their pages
(market.admin_bars) are added here by URL and to the index, the Market app's list and the sidebar by
`get_app_list`. Everything registered with `admin.register` works as on Django's default site.
Installed as the default site by cryptostock.apps.CryptostockAdminConfig in INSTALLED_APPS.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.urls import URLPattern, URLResolver


class CryptostockAdminSite(admin.AdminSite):
    def get_urls(self) -> list[URLResolver | URLPattern]:
        from market.admin_bars import BarAdminPages  # imported here: models load after the site

        # First: the site's own URLs end with a catch-all that would answer these with a 404.
        return [*BarAdminPages(self).urls(), *super().get_urls()]

    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list[Any]:
        from market.admin_bars import with_bars

        app_list = super().get_app_list(request, app_label)
        if app_label not in (None, "market"):
            return app_list
        return with_bars(app_list, request, self)

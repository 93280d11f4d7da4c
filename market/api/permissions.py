"""Who may read and change market data through the API."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from accounts.permissions import CanManageInstruments, CanReadMarketData


class MarketDataAccess(BasePermission):
    """Reads: the viewer role and up, or anyone when settings.PUBLIC_MARKET_DATA is on.
    Writes (exchanges, instruments): the admin role."""

    message = "Your role does not allow this."

    def has_permission(self, request: Request, view: Any) -> bool:
        if request.method in SAFE_METHODS:
            return settings.PUBLIC_MARKET_DATA or CanReadMarketData().has_permission(request, view)
        return CanManageInstruments().has_permission(request, view)

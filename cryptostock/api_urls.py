"""The versioned API: every app's endpoints under /api/<version>/ (each app keeps its own api/urls.py).

Every endpoint here needs a row in docs/api.md's permission table (accounts/tests/test_permission_matrix.py).
"""

from django.urls import include, path

urlpatterns = [
    path("", include("accounts.api.urls")),
    path("", include("market.api.urls")),
    path("", include("alerts.api.urls")),
    path("", include("indicators.api.urls")),
    path("", include("backtest.api.urls")),
    path("", include("exports.api.urls")),
]

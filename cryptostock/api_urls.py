"""The versioned API: every app's endpoints under /api/<version>/ (each app keeps its own api/urls.py)."""

from django.urls import include, path

urlpatterns = [
    path("", include("market.api.urls")),
]

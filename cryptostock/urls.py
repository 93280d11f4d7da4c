from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView

from cryptostock import metrics
from market import pages as market_pages
from market import views as market_views

urlpatterns = [
    path("", market_views.chart, name="chart"),
    path("health", market_views.health, name="health"),
    path("ready", market_views.ready, name="ready"),
    path("metrics", metrics.metrics, name="metrics"),
    path("watchlist/", market_pages.watchlist, name="watchlist"),
    path("alerts/", include("alerts.urls")),
    path("system/", market_pages.system, name="system"),
    path("accounts/", include("accounts.urls")),
    path("admin/", admin.site.urls),
    # Before the versioned API, whose <version> would otherwise swallow "schema", "docs" and "redoc".
    path("api/schema/", SpectacularAPIView.as_view(api_version="v1"), name="schema"),
    # The split view serves its script as a file, so the page needs no inline script (CSP).
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    path("api/<str:version>/", include("cryptostock.api_urls")),
]

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from market import views as market_views

urlpatterns = [
    path("", market_views.chart, name="chart"),
    path("health", market_views.health, name="health"),
    path("ready", market_views.ready, name="ready"),
    path("admin/", admin.site.urls),
    # Before the versioned API, whose <version> would otherwise swallow "schema" and "docs".
    path("api/schema/", SpectacularAPIView.as_view(api_version="v1"), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/<str:version>/", include("cryptostock.api_urls")),
]

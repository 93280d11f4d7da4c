from django.urls import include, path
from rest_framework.routers import SimpleRouter

from exports.api import views

router = SimpleRouter()
router.register("exports", views.ExportViewSet, basename="export")

urlpatterns = [
    path("exports/bars/", views.ExportBarsView.as_view(), name="export-bars"),
    path("", include(router.urls)),
]

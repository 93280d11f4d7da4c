from django.urls import include, path
from rest_framework.routers import SimpleRouter

from alerts.api import views

router = SimpleRouter()
router.register("alerts/rules", views.AlertRuleViewSet, basename="alert-rule")
router.register("alerts/firings", views.AlertFiringViewSet, basename="alert-firing")
router.register("alerts/notifications", views.NotificationViewSet, basename="alert-notification")

urlpatterns = [
    path("", include(router.urls)),
]

from django.urls import include, path
from rest_framework.routers import DefaultRouter

from market.api import views

router = DefaultRouter()
router.register("exchanges", views.ExchangeViewSet, basename="exchange")
router.register("instruments", views.InstrumentViewSet, basename="instrument")

urlpatterns = [
    path("bars/", views.BarsView.as_view(), name="bars"),
    path("", include(router.urls)),
]

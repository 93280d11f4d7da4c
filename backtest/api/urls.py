from django.urls import include, path
from rest_framework.routers import SimpleRouter

from backtest.api import views

router = SimpleRouter()
router.register("backtests", views.BacktestViewSet, basename="backtest")

urlpatterns = [
    path("", include(router.urls)),
]

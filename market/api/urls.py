from django.urls import include, path
from rest_framework.routers import SimpleRouter

from market.api import views
from market.api.arbitrage import ArbitrageOpportunityViewSet
from market.api.backfills import BackfillViewSet
from market.api.collectors import CollectorStatusViewSet
from market.api.quality import QualityReportListView
from market.api.watchlist import WatchlistInstrumentView, WatchlistReorderView, WatchlistView

router = SimpleRouter()
router.register("exchanges", views.ExchangeViewSet, basename="exchange")
router.register("instruments", views.InstrumentViewSet, basename="instrument")
router.register("collectors", CollectorStatusViewSet, basename="collector")
router.register("arbitrage/opportunities", ArbitrageOpportunityViewSet, basename="arbitrage-opportunity")
router.register("backfills", BackfillViewSet, basename="backfill")

urlpatterns = [
    path("bars/", views.BarsView.as_view(), name="bars"),
    path("snapshot/", views.SnapshotView.as_view(), name="snapshot"),
    path("quality/", QualityReportListView.as_view(), name="quality"),
    path("watchlist/", WatchlistView.as_view(), name="watchlist-api"),
    path("watchlist/reorder/", WatchlistReorderView.as_view(), name="watchlist-reorder"),
    path("watchlist/<int:instrument>/", WatchlistInstrumentView.as_view(), name="watchlist-instrument"),
    path("", include(router.urls)),
]

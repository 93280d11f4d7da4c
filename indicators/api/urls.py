from django.urls import path

from indicators.api import views

urlpatterns = [
    path("indicators/", views.IndicatorCatalogueView.as_view(), name="indicator-catalogue"),
    path("features/", views.FeatureCatalogueView.as_view(), name="feature-catalogue"),
    path(
        "instruments/<int:instrument_id>/indicators/",
        views.InstrumentIndicatorsView.as_view(),
        name="instrument-indicators",
    ),
    path(
        "instruments/<int:instrument_id>/features/", views.InstrumentFeaturesView.as_view(), name="instrument-features"
    ),
]

from django.urls import path

from market.consumers import MarketConsumer

websocket_urlpatterns = [
    path("ws/v1/market/", MarketConsumer.as_asgi()),
]

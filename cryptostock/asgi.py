"""ASGI entry point: HTTP through Django, WebSockets through Channels."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cryptostock.settings")

# Django must be set up (apps loaded) before anything imports models, so this comes first.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from cryptostock.websocket_origin import browser_origin_validator  # noqa: E402
from cryptostock.websocket_transport import with_transport_backpressure  # noqa: E402
from market.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": with_transport_backpressure(
            browser_origin_validator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))
        ),
    }
)

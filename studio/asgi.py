"""ASGI entry point: Django views over HTTP, live streams over websockets."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studio.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from studio.ws_auth import BrowserOriginValidator, TokenOrSessionAuthMiddleware  # noqa: E402
from training.routing import websocket_urlpatterns as training_sockets  # noqa: E402
from tuning.routing import websocket_urlpatterns as tuning_sockets  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": BrowserOriginValidator(TokenOrSessionAuthMiddleware(URLRouter(training_sockets + tuning_sockets))),
    }
)

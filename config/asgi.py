"""ASGI entry point: HTTP through Django, websockets through Channels.

Served by uvicorn (`python -m config.serve`, what `make run` does) or daphne
(`daphne -b 127.0.0.1 -p 8000 config.asgi:application`); both keep the
websocket contract.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
# Django must be set up before anything imports models.
django_asgi_app = get_asgi_application()

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

# The ASGI server (uvicorn or daphne) serves the pages' CSS and JS (/static/)
# itself: no extra web server.
django_asgi_app = ASGIStaticFilesHandler(django_asgi_app)

from django.conf import settings  # noqa: E402

from config.upload_limits import UploadSizeLimit  # noqa: E402
from config.websocket_limits import WebsocketSends, abort_unanswered_uvicorn_pings, limit_daphne_messages  # noqa: E402

# Daphne builds its websocket factory after importing this module.
limit_daphne_messages(settings.CHAT_MAX_FRAME_BYTES)
abort_unanswered_uvicorn_pings()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from accounts.middleware import TokenAuthMiddleware  # noqa: E402
from common.origin import OriginHeaderValidator  # noqa: E402
from messaging.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        # An oversized upload is refused from its headers, before Django reads the body.
        "http": UploadSizeLimit(django_asgi_app, settings.CHAT_MAX_UPLOAD_BYTES),
        "websocket": WebsocketSends(
            OriginHeaderValidator(AuthMiddlewareStack(TokenAuthMiddleware(URLRouter(websocket_urlpatterns))))
        ),
    }
)

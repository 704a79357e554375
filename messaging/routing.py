from channels.generic.websocket import AsyncWebsocketConsumer
from django.urls import re_path

from .consumers import ChatConsumer


class UnknownPathConsumer(AsyncWebsocketConsumer):
    """Any other websocket path: refuse the handshake (HTTP 403) instead of a routing error (500)."""

    async def connect(self) -> None:
        await self.close()


websocket_urlpatterns = [
    re_path(r"^ws/chat/$", ChatConsumer.as_asgi()),
    re_path(r"^ws/chat/(?P<slug>[^/]+)/$", ChatConsumer.as_asgi()),
    re_path(r"", UnknownPathConsumer.as_asgi()),
]

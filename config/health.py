"""Liveness and readiness probes for load balancers and orchestrators."""

import asyncio
import uuid

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import connection
from django.http import HttpRequest, JsonResponse


async def healthz(request: HttpRequest) -> JsonResponse:
    """200 while the process runs and its event loop answers."""
    return JsonResponse({"status": "ok"})


def _check_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return "ok"
    except Exception as exc:  # any failure is reported, not raised
        connection.close_if_unusable_or_obsolete()
        return f"error: {exc.__class__.__name__}: {str(exc).strip()[:200]}"


async def _check_channel_layer() -> str:
    layer = get_channel_layer()
    if layer is None:
        return "error: no channel layer configured"
    try:
        # A round trip through the layer proves it both accepts and delivers.
        channel = await layer.new_channel("readyz.")
        token = uuid.uuid4().hex
        await asyncio.wait_for(layer.send(channel, {"type": "readyz", "token": token}), timeout=2)
        message = await asyncio.wait_for(layer.receive(channel), timeout=2)
        return "ok" if message.get("token") == token else "error: layer returned another message"
    except Exception as exc:
        return f"error: {exc.__class__.__name__}: {str(exc).strip()[:200] or 'timed out'}"


async def readyz(request: HttpRequest) -> JsonResponse:
    """200 only while both the database and the channel layer answer; else 503 naming each."""
    database, channel_layer = await asyncio.gather(
        sync_to_async(_check_database, thread_sensitive=False)(), _check_channel_layer()
    )
    body = {"database": database, "channel_layer": channel_layer}
    status = 200 if database == "ok" and channel_layer == "ok" else 503
    return JsonResponse(body, status=status)

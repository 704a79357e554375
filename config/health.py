"""Liveness and readiness probes for load balancers and orchestrators."""

import asyncio
import uuid

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import close_old_connections, connection
from django.http import HttpRequest, JsonResponse


async def healthz(request: HttpRequest) -> JsonResponse:
    """200 while the process runs and its event loop answers."""
    return JsonResponse({"status": "ok"})


# A probe answers within this many seconds, whatever hangs behind it.
PROBE_TIMEOUT = 3.0


def _check_database() -> str:
    # The probe runs on a pool thread that keeps its connection between calls:
    # drop it first if the server went away since (CONN_HEALTH_CHECKS), so one
    # database restart does not fail the next probe after recovery.
    close_old_connections()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return "ok"
    except Exception as exc:  # any failure is reported, not raised
        return f"error: {exc.__class__.__name__}: {str(exc).strip()[:200]}"
    finally:
        # As at the end of a request: keep the connection only as CONN_MAX_AGE allows.
        close_old_connections()


async def _database_status() -> str:
    try:
        return await asyncio.wait_for(sync_to_async(_check_database, thread_sensitive=False)(), timeout=PROBE_TIMEOUT)
    except TimeoutError:
        return "error: timed out"


async def _check_channel_layer() -> str:
    layer = get_channel_layer()
    if layer is None:
        return "error: no channel layer configured"
    try:
        # A round trip through the layer proves it both accepts and delivers.
        # The default prefix matters with channels-redis: one receive loop per
        # process serves every channel of that prefix, and while a socket's
        # consumer holds it, a channel of another prefix would never be read.
        channel = await layer.new_channel()
        token = uuid.uuid4().hex
        await asyncio.wait_for(layer.send(channel, {"type": "readyz", "token": token}), timeout=PROBE_TIMEOUT / 2)
        message = await asyncio.wait_for(layer.receive(channel), timeout=PROBE_TIMEOUT / 2)
        return "ok" if message.get("token") == token else "error: layer returned another message"
    except Exception as exc:
        return f"error: {exc.__class__.__name__}: {str(exc).strip()[:200] or 'timed out'}"


async def readyz(request: HttpRequest) -> JsonResponse:
    """200 only while both the database and the channel layer answer; else 503 naming each."""
    database, channel_layer = await asyncio.gather(_database_status(), _check_channel_layer())
    body = {"database": database, "channel_layer": channel_layer}
    status = 200 if database == "ok" and channel_layer == "ok" else 503
    return JsonResponse(body, status=status)

"""Sending to channel-layer groups from synchronous code (services, signals, admin).

Broadcasts are best effort by design: the channel layer may drop a message,
and every socket repairs gaps from the database (see messaging.delivery).
A broadcast failure therefore never undoes or hides a committed write.
"""

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)


def group_send_sync(group: str, event: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, event)
    except Exception:
        logger.warning("group_send to %s failed; sockets will repair from the database", group, exc_info=True)

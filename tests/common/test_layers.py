import asyncio

import pytest
from django.conf import settings

from common.layers import WaitingRedisChannelLayer, blocking_redis_client

pytestmark = pytest.mark.redis


async def test_a_burst_beyond_the_pool_waits_instead_of_failing():
    layer = WaitingRedisChannelLayer(
        hosts=[{"address": settings.REDIS_URL, "max_connections": 2}],
        prefix=f"{settings.CHAT_REDIS_PREFIX}:burst",
    )
    channels = [await layer.new_channel() for _ in range(40)]
    # 40 concurrent calls on a pool of 2: redis-py's default pool would raise
    # MaxConnectionsError here.
    await asyncio.gather(*(layer.group_add("burst", c) for c in channels))
    await layer.group_send("burst", {"type": "hello"})
    await asyncio.gather(*(layer.group_discard("burst", c) for c in channels))
    await layer.flush()


async def test_blocking_client_waits_for_a_connection():
    client = blocking_redis_client(settings.REDIS_URL, max_connections=1)
    try:
        results = await asyncio.gather(*(client.ping() for _ in range(20)))
        assert all(results)
    finally:
        await client.aclose()

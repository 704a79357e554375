"""The channel layer for REDIS_URL: channels-redis with a pool that waits.

redis-py's asyncio `ConnectionPool` raises `MaxConnectionsError` the moment it
holds `max_connections`; a burst (thousands of sockets connecting or closing
at once) then loses group_add/group_discard calls and broadcasts. The
blocking pool makes such a burst queue for a connection instead, for up to
`pool_timeout` seconds.
"""

from typing import Any

import redis.asyncio as aioredis
from channels_redis.core import RedisChannelLayer


class WaitingRedisChannelLayer(RedisChannelLayer):
    def create_pool(self, index: int) -> Any:
        host = dict(self.hosts[index])
        address = host.pop("address")
        timeout = host.pop("pool_timeout", 20)
        return aioredis.BlockingConnectionPool.from_url(address, timeout=timeout, **host)


def blocking_redis_client(url: str, *, max_connections: int, **kwargs: Any) -> aioredis.Redis:
    """A redis.asyncio client whose pool waits for a free connection rather than raising."""
    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=20, **kwargs)
    return aioredis.Redis(connection_pool=pool)

"""Per-user message rate limit shared by websocket and REST (CHAT_RATE_LIMIT).

A fixed window counter in the Django cache: Redis when REDIS_URL is set, so
every server process counts against the same budget.
"""

import time

from django.conf import settings
from django.core.cache import cache

from .errors import RateLimited
from .rates import Rate, parse_rate

__all__ = ["Rate", "parse_rate", "rate_limit_hit"]


def rate_limit_hit(*, user_id: int, scope: str = "msg") -> None:
    """Count one action for the user; raise RateLimited once the window's budget is spent."""
    rate = parse_rate(settings.CHAT_RATE_LIMIT)
    if rate is None:
        return
    now = time.time()
    window = int(now // rate.seconds)
    key = f"rl:{scope}:{user_id}:{window}"
    cache.add(key, 0, timeout=rate.seconds + 1)
    try:
        used = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=rate.seconds + 1)
        used = 1
    if used > rate.count:
        raise RateLimited(retry_after=(window + 1) * rate.seconds - now)

"""Per-user message rate limit shared by websocket and REST (CHAT_RATE_LIMIT).

A fixed window counter in the Django cache: Redis when REDIS_URL is set, so
every server process counts against the same budget.
"""

import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

from .errors import RateLimited


@dataclass(frozen=True)
class Rate:
    count: int
    seconds: int


def parse_rate(value: str) -> Rate | None:
    """`"30/10"` -> Rate(30, 10); `"off"` (or empty) -> None."""
    value = (value or "").strip().lower()
    if value in ("", "off", "none", "0"):
        return None
    try:
        count, seconds = value.split("/")
        rate = Rate(int(count), int(seconds))
    except ValueError as exc:
        raise ValueError(f"CHAT_RATE_LIMIT must look like N/S or 'off', not {value!r}") from exc
    if rate.count < 1 or rate.seconds < 1:
        raise ValueError(f"CHAT_RATE_LIMIT must be positive, not {value!r}")
    return rate


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

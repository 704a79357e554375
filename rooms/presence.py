"""Who is online in which room, shared by every server process.

A user is online in a room while at least one of their sockets has joined
it. Each server process that has such a socket holds one entry
`"<user_id>:<process channel>"` with an expiry time (messaging.fanout counts
the sockets), refreshed every few seconds; entries of a process that died stop
being refreshed and are swept out within CHAT_PRESENCE_TTL seconds.

With REDIS_URL the entries live in Redis sorted sets (score = expiry), and
each change is one MULTI transaction, so exactly one socket sees "first in"
or "last out". Without Redis, a dict in this process does the same.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import defaultdict
from typing import Any, Protocol

from django.conf import settings


def _rooms_key() -> str:
    return f"{settings.CHAT_REDIS_PREFIX}:presence:rooms"


def _key(room: str) -> str:
    return f"{settings.CHAT_REDIS_PREFIX}:presence:{room}"


def _member(user_id: int, channel: str) -> str:
    return f"{user_id}:{channel}"


def _users(members: list[str]) -> set[int]:
    return {int(m.split(":", 1)[0]) for m in members}


class PresenceStore(Protocol):
    async def add(self, room: str, user_id: int, channel: str) -> bool: ...
    async def remove(self, room: str, user_id: int, channel: str) -> bool: ...
    async def add_many(self, room: str, entries: list[tuple[int, str]]) -> set[int]: ...
    async def remove_many(self, room: str, entries: list[tuple[int, str]]) -> set[int]: ...
    async def online(self, room: str) -> set[int]: ...
    async def refresh(self, entries: list[tuple[str, int, str]]) -> None: ...
    async def sweep(self) -> list[tuple[str, int]]: ...


class MemoryPresence:
    def __init__(self) -> None:
        self.rooms: dict[str, dict[str, float]] = defaultdict(dict)

    def _live(self, room: str) -> dict[str, float]:
        now = time.time()
        return {m: exp for m, exp in self.rooms[room].items() if exp > now}

    async def add(self, room: str, user_id: int, channel: str) -> bool:
        before = _users(list(self._live(room)))
        self.rooms[room][_member(user_id, channel)] = time.time() + settings.CHAT_PRESENCE_TTL
        return user_id not in before

    async def remove(self, room: str, user_id: int, channel: str) -> bool:
        removed = self.rooms[room].pop(_member(user_id, channel), None) is not None
        return removed and user_id not in _users(list(self._live(room)))

    async def add_many(self, room: str, entries: list[tuple[int, str]]) -> set[int]:
        before = _users(list(self._live(room)))
        expiry = time.time() + settings.CHAT_PRESENCE_TTL
        for user_id, channel in entries:
            self.rooms[room][_member(user_id, channel)] = expiry
        return {user_id for user_id, _ in entries} - before

    async def remove_many(self, room: str, entries: list[tuple[int, str]]) -> set[int]:
        for user_id, channel in entries:
            self.rooms[room].pop(_member(user_id, channel), None)
        return {user_id for user_id, _ in entries} - _users(list(self._live(room)))

    async def online(self, room: str) -> set[int]:
        return _users(list(self._live(room)))

    async def refresh(self, entries: list[tuple[str, int, str]]) -> None:
        expiry = time.time() + settings.CHAT_PRESENCE_TTL
        for room, user_id, channel in entries:
            member = _member(user_id, channel)
            if member in self.rooms[room]:
                self.rooms[room][member] = expiry

    async def sweep(self) -> list[tuple[str, int]]:
        now = time.time()
        gone: list[tuple[str, int]] = []
        for room, members in self.rooms.items():
            expired = [m for m, exp in members.items() if exp <= now]
            for m in expired:
                del members[m]
            live = _users(list(members))
            gone.extend((room, uid) for uid in _users(expired) - live)
        return gone


class RedisPresence:
    def __init__(self, url: str) -> None:
        self.url = url
        # One client per event loop (redis.asyncio connections are loop-bound);
        # weak keys drop a client with its loop, e.g. async_to_sync's throwaway loops.
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()

    def _client(self) -> Any:
        from common.layers import blocking_redis_client

        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = blocking_redis_client(
                self.url,
                max_connections=settings.REDIS_MAX_CONNECTIONS,
                decode_responses=True,
                socket_timeout=15,
            )
            self._clients[loop] = client
        return client

    async def add(self, room: str, user_id: int, channel: str) -> bool:
        now = time.time()
        async with self._client().pipeline(transaction=True) as pipe:
            pipe.zrange(_key(room), now, "+inf", byscore=True)
            pipe.zadd(_key(room), {_member(user_id, channel): now + settings.CHAT_PRESENCE_TTL})
            pipe.sadd(_rooms_key(), room)
            before, _, _ = await pipe.execute()
        return user_id not in _users(before)

    async def remove(self, room: str, user_id: int, channel: str) -> bool:
        now = time.time()
        async with self._client().pipeline(transaction=True) as pipe:
            pipe.zrem(_key(room), _member(user_id, channel))
            pipe.zrange(_key(room), now, "+inf", byscore=True)
            removed, after = await pipe.execute()
        return bool(removed) and user_id not in _users(after)

    async def add_many(self, room: str, entries: list[tuple[int, str]]) -> set[int]:
        """Add entries in one MULTI; return the users who had no live entry before (newly online)."""
        now = time.time()
        expiry = now + settings.CHAT_PRESENCE_TTL
        async with self._client().pipeline(transaction=True) as pipe:
            pipe.zrange(_key(room), now, "+inf", byscore=True)
            pipe.zadd(_key(room), {_member(uid, channel): expiry for uid, channel in entries})
            pipe.sadd(_rooms_key(), room)
            before, _, _ = await pipe.execute()
        return {uid for uid, _ in entries} - _users(before)

    async def remove_many(self, room: str, entries: list[tuple[int, str]]) -> set[int]:
        """Remove entries in one MULTI; return the users left with no live entry (now offline)."""
        now = time.time()
        async with self._client().pipeline(transaction=True) as pipe:
            pipe.zrem(_key(room), *[_member(uid, channel) for uid, channel in entries])
            pipe.zrange(_key(room), now, "+inf", byscore=True)
            _, after = await pipe.execute()
        return {uid for uid, _ in entries} - _users(after)

    async def online(self, room: str) -> set[int]:
        return _users(await self._client().zrange(_key(room), time.time(), "+inf", byscore=True))

    async def refresh(self, entries: list[tuple[str, int, str]]) -> None:
        if not entries:
            return
        expiry = time.time() + settings.CHAT_PRESENCE_TTL
        async with self._client().pipeline(transaction=False) as pipe:
            for room, user_id, channel in entries:
                pipe.zadd(_key(room), {_member(user_id, channel): expiry}, xx=True)
            await pipe.execute()

    async def sweep(self) -> list[tuple[str, int]]:
        """Drop expired entries; return (room, user) pairs that went offline by it.

        ZREM's count decides who reports, so of several processes sweeping at
        once only the one that removed an entry announces the user offline.
        """
        client = self._client()
        now = time.time()
        gone: list[tuple[str, int]] = []
        for room in await client.smembers(_rooms_key()):
            expired = await client.zrange(_key(room), "-inf", now, byscore=True)
            if not expired:
                continue
            removed = [m for m in expired if await client.zrem(_key(room), m)]
            live = _users(await client.zrange(_key(room), now, "+inf", byscore=True))
            gone.extend((room, uid) for uid in _users(removed) - live)
        return gone


_store: PresenceStore | None = None


def presence() -> PresenceStore:
    global _store
    if _store is None:
        _store = RedisPresence(settings.REDIS_URL) if settings.REDIS_URL else MemoryPresence()
    return _store


def reset_presence() -> None:
    """Forget the store (tests switch settings between cases)."""
    global _store
    _store = None

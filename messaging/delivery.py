"""Per-socket, per-room ordered delivery: each message once, in seq order, no gaps.

The channel layer is at-most-once and may reorder (two processes committing
one after the other publish independently). A `RoomCursor` holds the last
seq this socket delivered in a room: a repeat is dropped, the next seq goes
out at once, and anything further ahead is held back while the missing seqs
are fetched from the database after a short wait (CHAT_GAP_WAIT). A trailing
drop, with nothing after it to reveal the gap, is caught by the process-wide
`Watcher`, which compares each room's last seq with what its sockets have
delivered every CHAT_SWEEP_INTERVAL seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.conf import settings

from . import db

if TYPE_CHECKING:
    from .consumers import ChatConsumer

logger = logging.getLogger(__name__)

Deliver = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class RoomCursor:
    room_id: int
    slug: str
    delivered: int
    held: dict[int, dict[str, Any]] = field(default_factory=dict)
    repair: asyncio.Task[None] | None = None
    # Seen by the watcher as behind the room's last_seq on its previous pass.
    lagging_since: int | None = None

    async def offer(self, message: dict[str, Any], deliver: Deliver) -> None:
        """Take one message from the channel layer (or a repair) and deliver what is due."""
        seq = message["seq"]
        if seq <= self.delivered or seq in self.held:
            return
        self.held[seq] = message
        await self._flush(deliver)

    async def _flush(self, deliver: Deliver) -> None:
        while self.delivered + 1 in self.held:
            message = self.held.pop(self.delivered + 1)
            self.delivered += 1
            await deliver(message)

    @property
    def has_gap(self) -> bool:
        return bool(self.held)

    async def fill_from_db(self, deliver: Deliver, up_to: int | None = None) -> None:
        """Fetch what lies between `delivered` and the held messages (or `up_to`) and deliver it."""
        target = max(self.held) if self.held else up_to
        while target is not None and self.delivered < target:
            rows = await db.fetch_range(
                room_id=self.room_id, slug=self.slug, after=self.delivered, up_to=target, limit=500
            )
            if not rows:
                break
            for message in rows:
                if message["seq"] > self.delivered and message["seq"] not in self.held:
                    self.held[message["seq"]] = message
            before = self.delivered
            await self._flush(deliver)
            if self.delivered == before:
                break
        # Anything still held below `delivered` is a duplicate by now.
        for seq in [s for s in self.held if s <= self.delivered]:
            del self.held[seq]


class Watcher:
    """One per event loop: refreshes presence, repairs trailing gaps, closes idle sockets."""

    def __init__(self) -> None:
        self.consumers: weakref.WeakSet[ChatConsumer] = weakref.WeakSet()
        self.task: asyncio.Task[None] | None = None

    def register(self, consumer: ChatConsumer) -> None:
        self.consumers.add(consumer)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run())

    def unregister(self, consumer: ChatConsumer) -> None:
        self.consumers.discard(consumer)

    async def _run(self) -> None:
        while self.consumers:
            await asyncio.sleep(settings.CHAT_SWEEP_INTERVAL)
            try:
                await self.tick()
            except Exception:
                logger.warning("delivery watcher pass failed; retrying next interval", exc_info=True)

    async def tick(self) -> None:
        """One pass: close idle sockets, repair trailing gaps, refresh presence.

        Each part fails on its own: a database outage must not stop idle
        sockets from closing or presence from being refreshed in Redis, and a
        Redis outage must not stop gap repair from the database.
        """
        now = time.monotonic()
        consumers = []
        for consumer in list(self.consumers):
            if now - consumer.last_frame_at > settings.CHAT_IDLE_TIMEOUT:
                await consumer.close_idle()
            else:
                consumers.append(consumer)
        try:
            await self._repair_trailing(consumers)
        except Exception:
            logger.warning("delivery sweep could not read last seqs; retrying next interval", exc_info=True)
        try:
            await self._refresh_presence(consumers)
        except Exception:
            logger.warning("presence refresh failed; retrying next interval", exc_info=True)

    async def _repair_trailing(self, consumers: list[ChatConsumer]) -> None:
        room_ids = {c.room_id for consumer in consumers for c in consumer.cursors.values()}
        latest = await db.last_seqs(sorted(room_ids)) if room_ids else {}
        for consumer in consumers:
            for cursor in list(consumer.cursors.values()):
                last = latest.get(cursor.room_id, 0)
                if last <= cursor.delivered:
                    cursor.lagging_since = None
                elif cursor.lagging_since is not None and cursor.lagging_since >= cursor.delivered:
                    # Behind on two passes in a row without progress: the
                    # broadcast was lost, not merely in flight.
                    consumer.schedule_repair(cursor, up_to=last, wait=0)
                    cursor.lagging_since = None
                else:
                    cursor.lagging_since = cursor.delivered

    async def _refresh_presence(self, consumers: list[ChatConsumer]) -> None:
        from rooms.presence import presence

        from .consumers import announce_presence

        entries = [
            (cursor.slug, consumer.user_id, consumer.channel_name)
            for consumer in consumers
            for cursor in list(consumer.cursors.values())
        ]
        store = presence()
        await store.refresh(entries)
        for slug, user_id in await store.sweep():
            await announce_presence(slug, user_id, online=False)


_watchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Watcher] = weakref.WeakKeyDictionary()


def watcher() -> Watcher:
    loop = asyncio.get_running_loop()
    w = _watchers.get(loop)
    if w is None:
        w = _watchers[loop] = Watcher()
    return w

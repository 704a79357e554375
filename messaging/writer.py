"""Group commit for websocket sends, and ordered broadcasting of what committed.

Every socket's `send` goes into one queue per event loop. A single flusher
takes whatever has queued up and posts it with `messages_create` in one
transaction on the database thread; meanwhile new sends queue for the next
batch. At low load a batch is one message and adds no delay; under load
the cost of a transaction is shared by everything that arrived while the
previous one committed. Acks are sent only after the batch's COMMIT.

Broadcasts of committed batches are handed back to the event loop and sent
by one task in commit order, so the database thread never waits on Redis
and two batches' messages cannot overtake each other on the way out.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from .services import NewMessage, Posted, messages_create

logger = logging.getLogger(__name__)

MAX_BATCH = 200


class Writer:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: list[tuple[NewMessage, asyncio.Future[tuple[Posted, dict[str, Any] | None]]]] = []
        self.flusher: asyncio.Task[None] | None = None
        self.outbox: asyncio.Queue[list[tuple[str, dict[str, Any]]]] = asyncio.Queue()
        self.publisher: asyncio.Task[None] | None = None

    async def submit(self, request: NewMessage) -> tuple[Posted, dict[str, Any] | None]:
        """Queue one send; resolves after its batch commits with the outcome and the message as a dict."""
        future: asyncio.Future[tuple[Posted, dict[str, Any] | None]] = self.loop.create_future()
        self.queue.append((request, future))
        if self.flusher is None or self.flusher.done():
            self.flusher = self.loop.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        while self.queue:
            batch, self.queue = self.queue[:MAX_BATCH], self.queue[MAX_BATCH:]
            # Filled on commit, on the database thread, and read here only once
            # the batch has returned: the acks are released first, so a
            # sender's socket gets its `ack` before the broadcast `message`.
            committed: list[tuple[str, dict[str, Any]]] = []
            try:
                results = await _post_batch([req for req, _ in batch], committed.extend)
            except Exception as exc:
                # The database is unreachable or failed: nobody gets an ack.
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                results = None
            if results is not None:
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
            if committed:
                self._enqueue(committed)

    def _enqueue(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        self.outbox.put_nowait(events)
        if self.publisher is None or self.publisher.done():
            self.publisher = self.loop.create_task(self._publish())

    async def _publish(self) -> None:
        layer = get_channel_layer()
        while not self.outbox.empty():
            for group, event in self.outbox.get_nowait():
                try:
                    await layer.group_send(group, event)
                except Exception:
                    # Sockets repair the hole from the database (messaging.delivery).
                    logger.warning("broadcast to %s failed", group, exc_info=True)


@database_sync_to_async
def _post_batch(requests: list[NewMessage], publish: Any) -> list[tuple[Posted, dict[str, Any] | None]]:
    return [(p, p.data) for p in messages_create(requests=requests, publish=publish)]


_writers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Writer] = weakref.WeakKeyDictionary()


def writer() -> Writer:
    loop = asyncio.get_running_loop()
    w = _writers.get(loop)
    if w is None:
        w = _writers[loop] = Writer(loop)
    return w

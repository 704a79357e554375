"""Per-process fan-out: one channel-layer subscription per room per server process.

This is the one hot path of realtime delivery. Every socket of a process
reaches the channel layer through the process's `Hub`, never on its own:

- The hub owns one channel. The first local socket to join a room adds that
  channel to the room's group; the last one to leave (or close, or fail)
  discards it. Likewise for a user's group (bans, leaves, deactivation,
  mentions): joined for the first local socket of the user, left with the last.
- Each broadcast therefore arrives once per process. A `RoomFanout` puts the
  room's messages in seq order (holding back what comes early and fetching
  what is missing from the database, once for the whole process), encodes
  each frame once per variant (the author's, with `client_id`, and
  everyone else's) and writes the same text to every local socket in the
  room, skipping what a socket already has from its join replay.
- A socket joining a room is registered *before* it reads the room's
  `last_seq` and replay; until it has sent `joined`, frames for it are queued
  (`Member.pending`), then flushed, minus what the replay covered. So nothing
  committed between the subscription and the read falls in a hole, and
  nothing arrives twice.
- Presence is per process too: a user counts as online in a room while one
  of their sockets on any process has joined it. Changes are coalesced per
  room for `CHAT_PRESENCE_BATCH` seconds (a join storm costs one Redis
  round trip and one broadcast per batch), and every process keeps the room's
  online list from those broadcasts, so `joined.online` costs no query.

The socket side is a `LocalSocket` (the consumer); this module never imports
the consumer, so the dependency runs one way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from accounts.models import user_group_name
from rooms.models import room_group_name
from rooms.presence import presence

from . import db
from .attachments import sweep_unused_uploads
from .delivery import SeqCursor

logger = logging.getLogger(__name__)


def dumps(data: dict[str, Any]) -> str:
    return orjson.dumps(data).decode()


class LocalSocket(Protocol):
    """What the hub needs of a socket (implemented by `ChatConsumer`)."""

    user_id: int
    user_dict: dict[str, Any]
    last_frame_at: float

    async def write(self, text: str) -> None: ...
    async def on_user_event(self, event: dict[str, Any]) -> None: ...
    async def close_idle(self) -> None: ...


@dataclass(eq=False)
class Member:
    """One socket in one room: how far it has been delivered, and frames queued while it joins."""

    socket: LocalSocket
    room: RoomFanout
    delivered: int = 0
    # Counted among the room's local users (presence) once the join succeeded.
    arrived: bool = False
    # (seq or None, text): queued while the socket is joining or replaying.
    pending: list[tuple[int | None, str]] | None = field(default_factory=list)

    @property
    def user_id(self) -> int:
        return self.socket.user_id


class RoomFanout:
    """A room's subscription in this process: ordered, repaired, encoded once, written to every local socket."""

    def __init__(self, hub: Hub, slug: str) -> None:
        self.hub = hub
        self.slug = slug
        self.group = room_group_name(slug)
        self.room_id: int | None = None
        self.members: dict[LocalSocket, Member] = {}
        self.subscribed = False
        # The room's seq order for this process; None until the first join has read last_seq.
        self.cursor: SeqCursor | None = None
        self.early: list[dict[str, Any]] = []
        # The process's first join started from here: a later join that read an
        # older last_seq gets the messages up to it from the database.
        self.base = 0
        self.repair: asyncio.Task[None] | None = None
        self.outbox: deque[tuple[Any, ...]] = deque()
        self.drainer: asyncio.Task[None] | None = None
        self.lagging_since: int | None = None
        # Presence: local sockets per user, the room's online users (all
        # processes), and changes waiting for the next batch.
        self.local_users: Counter[int] = Counter()
        self.online: dict[int, dict[str, Any]] = {}
        self.presence_changes: dict[int, bool] = {}
        self.presence_flush: asyncio.Task[None] | None = None
        self.online_ready = False
        self.online_early: list[dict[str, Any]] = []

    # --- membership --------------------------------------------------------

    def add(self, socket: LocalSocket) -> Member:
        member = Member(socket=socket, room=self)
        self.members[socket] = member
        return member

    def start(self, room_id: int, last_seq: int) -> None:
        """The first join's read of the room: live order starts after `last_seq`."""
        if self.cursor is not None:
            return
        self.room_id = room_id
        self.base = last_seq
        self.cursor = SeqCursor(delivered=last_seq)
        early, self.early = self.early, []
        for message in early:
            self.offer(message)

    async def activate(self, member: Member, delivered: int) -> None:
        """The socket has sent its replay and `joined`: flush what queued for it, then go live."""
        member.delivered = delivered
        if delivered < self.base and self.room_id is not None:
            # Joined from an older read than the process's first join: the
            # messages in between reached no queue of this socket.
            rows = await db.fetch_range(
                room_id=self.room_id, slug=self.slug, after=delivered, up_to=self.base, limit=self.base - delivered
            )
            for message in rows:
                if message["seq"] > member.delivered:
                    member.delivered = message["seq"]
                    await member.socket.write(encode_message("message", message, member.user_id))
        await self.release(member)

    def hold(self, member: Member) -> None:
        """Queue live frames for this socket (a replay on an already joined socket is being sent)."""
        if member.pending is None:
            member.pending = []

    async def release(self, member: Member) -> None:
        while member.pending:
            pending, member.pending = member.pending, []
            for seq, text in pending:
                if seq is not None:
                    if seq <= member.delivered:
                        continue
                    member.delivered = seq
                await member.socket.write(text)
        member.pending = None

    # --- messages ----------------------------------------------------------

    def offer(self, message: dict[str, Any]) -> None:
        """A `message` from the channel layer: deliver what is due, hold what is early."""
        if self.cursor is None:
            self.early.append(message)
            return
        due = self.cursor.offer(message)
        if due:
            self._enqueue(("messages", due))
        if self.cursor.has_gap:
            self.schedule_repair(wait=settings.CHAT_GAP_WAIT)

    def _enqueue(self, item: tuple[Any, ...]) -> None:
        # Everything a room writes goes through one queue drained by one task,
        # so a repair and the receive loop cannot interleave their writes and
        # an update never overtakes the message it updates.
        self.outbox.append(item)
        if self.drainer is None or self.drainer.done():
            self.drainer = self.hub.spawn(self._drain())

    async def _drain(self) -> None:
        while self.outbox:
            item = self.outbox.popleft()
            try:
                if item[0] == "messages":
                    await self._deliver(item[1])
                elif item[0] == "update":
                    await self._deliver_update(item[1], item[2])
                else:
                    await self._write_all(item[1], item[2])
            except Exception:
                logger.exception("fan-out in %s failed", self.slug)

    async def _deliver(self, messages: list[dict[str, Any]]) -> None:
        for message in messages:
            seq = message["seq"]
            author_id = message["author"]["id"]
            others: str | None = None
            own: str | None = None
            for member in list(self.members.values()):
                if member.user_id == author_id:
                    if own is None:
                        own = encode_message("message", message, author_id)
                    text = own
                else:
                    if others is None:
                        others = encode_message("message", message, None)
                    text = others
                if member.pending is not None:
                    member.pending.append((seq, text))
                elif seq > member.delivered:
                    member.delivered = seq
                    await member.socket.write(text)

    def schedule_repair(self, *, wait: float, up_to: int | None = None) -> None:
        if self.repair is not None and not self.repair.done():
            return
        self.repair = self.hub.spawn(self._repair(wait, up_to))

    async def _repair(self, wait: float, up_to: int | None) -> None:
        if wait:
            await asyncio.sleep(wait)
        cursor = self.cursor
        try:
            if cursor is None or self.room_id is None or not self.members:
                return
            target = cursor.target(up_to)
            while target is not None and cursor.delivered < target:
                rows = await db.fetch_range(
                    room_id=self.room_id, slug=self.slug, after=cursor.delivered, up_to=target, limit=500
                )
                if not rows:
                    break
                before = cursor.delivered
                due = cursor.fill(rows)
                if due:
                    self._enqueue(("messages", due))
                if cursor.delivered == before:
                    break
            cursor.forget_delivered()
        except Exception:
            # The sweep notices the gap again and retries.
            logger.warning("gap repair in %s failed", self.slug, exc_info=True)
        finally:
            self.repair = None
        if cursor is not None and cursor.has_gap and self.members:
            self.schedule_repair(wait=settings.CHAT_GAP_WAIT)

    # --- other room events -------------------------------------------------

    def broadcast_update(self, kind: str, message: dict[str, Any]) -> None:
        """`message_updated` / `message_deleted`: the whole message, `client_id` for its author only."""
        self._enqueue(("update", kind, message))

    def broadcast(self, text: str, *, skip_user: int | None = None) -> None:
        """The same frame to every local socket in the room (but `skip_user`'s own)."""
        self._enqueue(("text", text, skip_user))

    async def _deliver_update(self, kind: str, message: dict[str, Any]) -> None:
        author_id = message["author"]["id"]
        own = encode_message(kind, message, author_id)
        others = encode_message(kind, message, None)
        for member in list(self.members.values()):
            await self._write(member, own if member.user_id == author_id else others)

    async def _write_all(self, text: str, skip_user: int | None) -> None:
        for member in list(self.members.values()):
            if member.user_id != skip_user:
                await self._write(member, text)

    @staticmethod
    async def _write(member: Member, text: str) -> None:
        if member.pending is not None:
            member.pending.append((None, text))
        else:
            await member.socket.write(text)

    # --- presence ----------------------------------------------------------

    def arrive(self, member: Member) -> None:
        """The member's join succeeded: it counts for presence from now on."""
        member.arrived = True
        user_id = member.user_id
        self.hub.users[user_id] = member.socket.user_dict
        self.local_users[user_id] += 1
        if self.local_users[user_id] == 1:
            self._queue_presence(user_id, True)

    def depart(self, member: Member) -> None:
        if not member.arrived:
            return
        member.arrived = False
        user_id = member.user_id
        self.local_users[user_id] -= 1
        if self.local_users[user_id] <= 0:
            del self.local_users[user_id]
            self._queue_presence(user_id, False)

    def _queue_presence(self, user_id: int, online: bool) -> None:
        if self.presence_changes.get(user_id) is (not online):
            # Came and went (or went and came back) within one batch: no news.
            del self.presence_changes[user_id]
        else:
            self.presence_changes[user_id] = online
        if self.presence_flush is None or self.presence_flush.done():
            self.presence_flush = self.hub.spawn(self._flush_presence())

    async def _flush_presence(self) -> None:
        # Changes queued while a batch is being sent wait for the next round
        # of this same task (the task is not done yet, so nobody starts another).
        while True:
            await asyncio.sleep(settings.CHAT_PRESENCE_BATCH)
            changes, self.presence_changes = self.presence_changes, {}
            if not changes:
                return
            await self._send_presence(changes)

    async def _send_presence(self, changes: dict[int, bool]) -> None:
        store = presence()
        arrived = [uid for uid, online in changes.items() if online]
        departed = [uid for uid, online in changes.items() if not online]
        events: list[dict[str, Any]] = []
        try:
            if arrived:
                came = await store.add_many(self.slug, [(uid, self.hub.channel) for uid in arrived])
                events += [{"user": self.hub.user(uid), "online": True} for uid in arrived if uid in came]
            if departed:
                went = await store.remove_many(self.slug, [(uid, self.hub.channel) for uid in departed])
                events += [{"user": self.hub.user(uid), "online": False} for uid in departed if uid in went]
        except Exception:
            # Presence is advisory; the sweep re-adds live entries next pass.
            logger.warning("presence update for %s failed", self.slug, exc_info=True)
            return
        if events:
            await self.hub.group_send(self.group, {"type": "chat.presence", "room": self.slug, "changes": events})

    def apply_presence(self, changes: list[dict[str, Any]]) -> None:
        """A presence batch from any process: keep the online list, tell local sockets of others."""
        if not self.online_ready:
            self.online_early.extend(changes)
        for change in changes:
            user = change["user"]
            if change["online"]:
                self.online[user["id"]] = user
            else:
                self.online.pop(user["id"], None)
            text = dumps({"type": "presence", "room": self.slug, "user": user, "online": change["online"]})
            self.broadcast(text, skip_user=user["id"])

    async def load_online(self) -> None:
        """Read who is online from the presence store (after subscribing, so no change is missed)."""
        self.online_ready = False
        ids = await presence().online(self.slug)
        users = await self.hub.users_for(ids)
        online = {u["id"]: u for u in users}
        # Changes that arrived while the read was in flight are newer than it.
        for change in self.online_early:
            if change["online"]:
                online[change["user"]["id"]] = change["user"]
            else:
                online.pop(change["user"]["id"], None)
        self.online = online
        self.online_ready = True
        self.online_early = []

    def online_users(self) -> list[dict[str, Any]]:
        users = dict(self.online)
        for uid in self.local_users:
            users.setdefault(uid, self.hub.user(uid))
        return sorted(users.values(), key=lambda u: u["username"])


def encode_message(kind: str, message: dict[str, Any], viewer_id: int | None) -> str:
    """One `message`-like frame as text; `client_id` only for its author."""
    if message.get("client_id") is not None and message["author"]["id"] != viewer_id:
        message = {**message, "client_id": None}
    return dumps({"type": kind, "message": message})


class Hub:
    """This process's (event loop's) single presence on the channel layer."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.layer = get_channel_layer()
        self.channel = ""
        self.rooms: dict[str, RoomFanout] = {}
        self.sockets: weakref.WeakSet[Any] = weakref.WeakSet()
        self.user_sockets: dict[int, set[LocalSocket]] = {}
        self.subscribed_users: set[int] = set()
        self.users: dict[int, dict[str, Any]] = {}
        self.locks: dict[str, asyncio.Lock] = {}
        self.reader: asyncio.Task[None] | None = None
        self.sweeper: asyncio.Task[None] | None = None
        # Unused uploads: first look one interval after this hub starts, then every interval.
        self.uploads_swept_at = time.monotonic()
        self.upload_sweeper: asyncio.Task[int] | None = None
        self.resubscribing: asyncio.Task[None] | None = None
        self.tasks: set[asyncio.Task[Any]] = set()
        self.started = asyncio.Lock()

    # --- plumbing ------------------------------------------------------------

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("fan-out task failed", exc_info=task.exception())

    async def ensure_started(self) -> None:
        if self.reader is not None and not self.reader.done():
            return
        async with self.started:
            if self.reader is not None and not self.reader.done():
                return
            if not self.channel:
                self.channel = await self.layer.new_channel(prefix="chat-process.")
            self.reader = self.loop.create_task(self._read())
            if self.sweeper is None or self.sweeper.done():
                self.uploads_swept_at = time.monotonic()
                self.sweeper = self.loop.create_task(self._sweep_forever())

    def lock(self, group: str) -> asyncio.Lock:
        lock = self.locks.get(group)
        if lock is None:
            lock = self.locks[group] = asyncio.Lock()
        return lock

    async def group_send(self, group: str, event: dict[str, Any]) -> None:
        try:
            await self.layer.group_send(group, event)
        except Exception:
            logger.warning("broadcast to %s failed", group, exc_info=True)

    def user(self, user_id: int) -> dict[str, Any]:
        return self.users.get(user_id) or {"id": user_id, "username": "", "display_name": ""}

    async def users_for(self, ids: Iterable[int]) -> list[dict[str, Any]]:
        ids = set(ids)
        missing = {uid for uid in ids if uid not in self.users}
        if missing:
            for user in await db.users_by_id(missing):
                self.users[user["id"]] = user
        return [self.user(uid) for uid in ids]

    # --- sockets -------------------------------------------------------------

    async def connect(self, socket: LocalSocket) -> None:
        """A socket is open: route its user's events (bans, leaves, deactivation, mentions) to it."""
        await self.ensure_started()
        self.sockets.add(socket)
        self.users[socket.user_id] = socket.user_dict
        self.user_sockets.setdefault(socket.user_id, set()).add(socket)
        group = user_group_name(socket.user_id)
        async with self.lock(group):
            if socket.user_id in self.user_sockets and socket.user_id not in self.subscribed_users:
                await self.layer.group_add(group, self.channel)
                self.subscribed_users.add(socket.user_id)

    async def disconnect(self, socket: LocalSocket, members: Iterable[Member]) -> None:
        """A socket closed: leave its rooms and, with its user's last socket, the user's group."""
        for member in list(members):
            await self.leave(member)
        self.sockets.discard(socket)
        sockets = self.user_sockets.get(socket.user_id)
        if sockets is None:
            return
        sockets.discard(socket)
        if sockets:
            return
        del self.user_sockets[socket.user_id]
        group = user_group_name(socket.user_id)
        async with self.lock(group):
            if socket.user_id not in self.user_sockets and socket.user_id in self.subscribed_users:
                self.subscribed_users.discard(socket.user_id)
                try:
                    await self.layer.group_discard(group, self.channel)
                except Exception:
                    logger.warning("leaving %s failed", group, exc_info=True)

    async def join(self, slug: str, socket: LocalSocket) -> Member:
        """Register a socket in a room (queueing its frames) and make sure this process hears the room."""
        await self.ensure_started()
        room = self.rooms.get(slug)
        if room is None:
            room = self.rooms[slug] = RoomFanout(self, slug)
        member = room.add(socket)
        try:
            async with self.lock(room.group):
                if not room.subscribed:
                    await self.layer.group_add(room.group, self.channel)
                    room.subscribed = True
                if not room.online_ready:
                    await room.load_online()
        except BaseException:
            room.members.pop(socket, None)
            await self._maybe_unsubscribe(room)
            raise
        return member

    async def leave(self, member: Member) -> None:
        room = member.room
        if room.members.pop(member.socket, None) is None:
            return
        room.depart(member)
        await self._maybe_unsubscribe(room)

    async def _maybe_unsubscribe(self, room: RoomFanout) -> None:
        if room.members:
            return
        async with self.lock(room.group):
            if room.members:
                return
            if self.rooms.get(room.slug) is room and not room.presence_changes:
                del self.rooms[room.slug]
            elif room.presence_changes:
                # Keep hearing the room until the last departure is announced;
                # the batch flush unsubscribes.
                self.spawn(self._unsubscribe_after_presence(room))
                return
            if room.subscribed:
                room.subscribed = False
                if room.repair is not None:
                    room.repair.cancel()
                try:
                    await self.layer.group_discard(room.group, self.channel)
                except Exception:
                    logger.warning("leaving %s's group failed", room.slug, exc_info=True)

    async def _unsubscribe_after_presence(self, room: RoomFanout) -> None:
        if room.presence_flush is not None:
            with contextlib.suppress(Exception):
                await room.presence_flush
        await self._maybe_unsubscribe(room)

    # --- the one receive loop ----------------------------------------------

    async def _read(self) -> None:
        failures = 0
        while True:
            try:
                event = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                if _cancel_requested():
                    raise asyncio.CancelledError from None
                # Redis went away: keep every socket open, wait, then make sure
                # this process is in its groups again and repair from the database.
                failures += 1
                logger.warning("channel layer receive failed; retrying", exc_info=True)
                await asyncio.sleep(min(2.0, 0.05 * 2 ** min(failures, 6)))
                if self.resubscribing is None or self.resubscribing.done():
                    self.resubscribing = self.spawn(self._resubscribe())
                continue
            failures = 0
            try:
                await self.dispatch(event)
            except Exception:
                logger.exception("failed to fan out a %r event", event.get("type"))

    async def dispatch(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "chat.message":
            room = self.rooms.get(event["message"]["room"])
            if room is not None:
                room.offer(event["message"])
        elif kind in ("chat.message_updated", "chat.message_deleted"):
            room = self.rooms.get(event["message"]["room"])
            if room is not None:
                room.broadcast_update(kind.split(".", 1)[1], event["message"])
        elif kind == "chat.typing":
            room = self.rooms.get(event["room"])
            if room is not None:
                text = dumps({"type": "typing", "room": event["room"], "user": event["user"]})
                room.broadcast(text, skip_user=event["user"]["id"])
        elif kind == "chat.presence":
            room = self.rooms.get(event["room"])
            if room is not None:
                room.apply_presence(event["changes"])
        elif kind == "chat.reaction":
            room = self.rooms.get(event["room"])
            if room is not None:
                # Encoded once for every local socket of the room.
                frame = {key: event[key] for key in ("room", "message_id", "emoji", "user", "on", "count")}
                room.broadcast(dumps({"type": "reaction", **frame}))
        elif kind == "chat.room_updated":
            room = self.rooms.get(event["room"]["slug"])
            if room is not None:
                room.broadcast(dumps({"type": "room_updated", "room": event["room"]}))
        elif isinstance(kind, str) and kind.startswith("user."):
            user_id = event.get("user_id")
            targets = self.user_sockets.get(user_id, set()) if user_id is not None else set()
            for socket in list(targets):
                self.spawn(socket.on_user_event(event))
        else:
            logger.warning("unknown fan-out event %r", kind)

    async def _resubscribe(self) -> None:
        """After a channel-layer failure: back into every group, then fetch what was missed."""
        for room in list(self.rooms.values()):
            with contextlib.suppress(Exception):
                await self.layer.group_add(room.group, self.channel)
        for user_id in list(self.subscribed_users):
            with contextlib.suppress(Exception):
                await self.layer.group_add(user_group_name(user_id), self.channel)
        rooms = [r for r in self.rooms.values() if r.room_id is not None]
        try:
            latest = await db.last_seqs(sorted({r.room_id for r in rooms if r.room_id is not None}))
        except Exception:
            return  # the sweep repairs trailing gaps later
        for room in rooms:
            assert room.room_id is not None
            room.schedule_repair(wait=0, up_to=latest.get(room.room_id, 0))

    # --- the sweep: idle sockets, trailing gaps, presence ---------------------

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(settings.CHAT_SWEEP_INTERVAL)
            try:
                await self.sweep()
            except Exception:
                logger.warning("fan-out sweep failed; retrying next interval", exc_info=True)
            if _cancel_requested():
                # Cancelled mid-sweep, and a library turned the CancelledError
                # into an error that the sweep logged: stop all the same, or
                # shutdown waits forever for this loop.
                raise asyncio.CancelledError
            self.sweep_uploads_when_due()

    def sweep_uploads_when_due(self) -> None:
        """Every CHAT_UPLOAD_SWEEP_INTERVAL, remove day-old unused uploads (the contract's promise, without cron).

        On a worker thread of its own, off the loop and off the thread the
        consumers' database calls share, so a long sweep delays no frame;
        one at a time; its failure is logged and the next interval retries.
        """
        now = time.monotonic()
        if now - self.uploads_swept_at < settings.CHAT_UPLOAD_SWEEP_INTERVAL:
            return
        if self.upload_sweeper is not None and not self.upload_sweeper.done():
            return
        self.uploads_swept_at = now
        self.upload_sweeper = self.spawn(self.sweep_uploads())

    async def sweep_uploads(self) -> int:
        """One sweep of unused uploads (messaging.attachments.sweep_unused_uploads); how many went."""
        try:
            return await database_sync_to_async(sweep_unused_uploads, thread_sensitive=False)(force=True)
        except Exception:
            logger.warning("sweeping unused uploads failed; retrying next interval", exc_info=True)
            return 0

    async def sweep(self) -> None:
        """One pass: close idle sockets, repair trailing gaps, refresh presence.

        Each part fails on its own: a database outage must not stop idle
        sockets from closing or presence from being refreshed, and a Redis
        outage must not stop gap repair from the database.
        """
        now = time.monotonic()
        for socket in list(self.sockets):
            if now - socket.last_frame_at > settings.CHAT_IDLE_TIMEOUT:
                await socket.close_idle()
        try:
            await self._repair_trailing()
        except Exception:
            logger.warning("sweep could not read last seqs; retrying next interval", exc_info=True)
        try:
            await self._refresh_presence()
        except Exception:
            logger.warning("presence refresh failed; retrying next interval", exc_info=True)

    async def _repair_trailing(self) -> None:
        rooms = [r for r in self.rooms.values() if r.room_id is not None and r.cursor is not None and r.members]
        if not rooms:
            return
        latest = await db.last_seqs(sorted({r.room_id for r in rooms if r.room_id is not None}))
        for room in rooms:
            assert room.cursor is not None and room.room_id is not None
            last = latest.get(room.room_id, 0)
            delivered = room.cursor.delivered
            if last <= delivered:
                room.lagging_since = None
            elif room.lagging_since is not None and room.lagging_since >= delivered:
                # Behind on two passes in a row without progress: the broadcast
                # was lost, not merely in flight.
                room.schedule_repair(up_to=last, wait=0)
                room.lagging_since = None
            else:
                room.lagging_since = delivered

    async def _refresh_presence(self) -> None:
        store = presence()
        entries = [(room.slug, uid, self.channel) for room in self.rooms.values() for uid in room.local_users]
        await store.refresh(entries)
        for slug, user_id in await store.sweep():
            # A process died without saying goodbye: its users' entries expired.
            (user,) = await self.users_for({user_id})
            await self.group_send(
                room_group_name(slug),
                {"type": "chat.presence", "room": slug, "changes": [{"user": user, "online": False}]},
            )
        for room in list(self.rooms.values()):
            if not room.subscribed:
                continue
            # Keep the group subscription alive (the list-based layer expires
            # them) and the online list honest (broadcasts are at most once).
            await self.layer.group_add(room.group, self.channel)
            async with self.lock(room.group):
                if room.subscribed:
                    await room.load_online()


def _cancel_requested() -> bool:
    """Whether this task was cancelled, even if the CancelledError never reached it.

    redis-py can turn a cancellation that lands mid-command into a connection
    error; a loop that logs errors and goes on would then never end.
    `Task.cancelling()` still counts the request.
    """
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


def hub() -> Hub:
    """This event loop's hub (one per server process; one per test's loop in tests)."""
    loop = asyncio.get_running_loop()
    h = _hubs.get(loop)
    if h is None or h.layer is not get_channel_layer():
        h = _hubs[loop] = Hub(loop)
    return h

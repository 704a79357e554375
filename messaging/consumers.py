"""The chat websocket: one socket per tab, any number of rooms.

Thin by design: parse and check the frame, call a service through
`messaging.db`, turn domain errors into `error` frames. Ordering and
gap repair live in `messaging.delivery`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from typing import Any

import orjson
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import Error as DatabaseError

from accounts.models import User, user_group_name
from accounts.serializers import user_to_dict
from common.errors import BadRequest, ChatError, NotFound, NotJoined, RateLimited, Unavailable
from rooms.models import SLUG_RE, room_group_name
from rooms.presence import presence

from . import db
from .delivery import RoomCursor, watcher
from .serializers import for_viewer
from .services import NewMessage
from .writer import writer

logger = logging.getLogger(__name__)

_slug_re = re.compile(SLUG_RE)

CLOSE_NOT_AUTHENTICATED = 4401
CLOSE_DEACTIVATED = 4403
CLOSE_IDLE = 4408
CLOSE_FLOODING = 4429
CLOSE_TOO_LARGE = 1009
# Issue 3: the channel layer failed under this socket (sent by daphne); the client should reconnect.
CLOSE_INTERNAL_ERROR = 1011
# rate_limited errors in a row before the socket is closed with 4429.
FLOOD_TOLERANCE = 10


async def announce_presence(slug: str, user_id: int, *, online: bool) -> None:
    """Tell a room that a user came online or went offline there."""
    users = await db.users_by_id({user_id})
    user = users[0] if users else {"id": user_id, "username": "", "display_name": ""}
    layer = get_channel_layer()
    await layer.group_send(
        room_group_name(slug), {"type": "chat.presence", "room": slug, "user": user, "online": online}
    )


def _dumps(data: dict[str, Any]) -> str:
    return orjson.dumps(data).decode()


def _loads(raw: str | bytes) -> Any:
    # The standard parser, not orjson: orjson turns integers beyond 64 bits
    # into floats, and a client's `after` must stay an exact integer.
    return json.loads(raw)


# The largest seq the database can hold; larger cursors mean "everything".
MAX_SEQ = 2**63 - 1


class ChatConsumer(AsyncWebsocketConsumer):
    """Handles `/ws/chat/` and `/ws/chat/<slug>/` (implicit join on connect)."""

    cursors: dict[str, RoomCursor]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # Issue 3 (delivery): when the channel layer fails (e.g. Redis restarts),
        # the receive loop or a group call raises and this socket can no longer
        # hear its rooms. Clean up as on a disconnect, then let the exception
        # reach daphne, which closes the socket with 1011 so the client
        # reconnects and rejoins with `after`. (1012 "service restart" would
        # be apter, but autobahn refuses to send it: a close from the app must
        # be 1000 or 3000-4999, and a refused close left the socket open and
        # dead.)
        try:
            await super().__call__(scope, receive, send)
        except Exception:
            if not getattr(self, "closed", True):
                try:
                    await self.disconnect(CLOSE_INTERNAL_ERROR)
                except Exception:
                    logger.warning("cleanup after a failed chat socket was incomplete", exc_info=True)
            raise

    async def connect(self) -> None:
        self.cursors = {}
        self.last_frame_at = time.monotonic()
        self.flood = 0
        self.closed = False
        self.lock = asyncio.Lock()
        user = self.scope.get("user")
        await self.accept()
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_NOT_AUTHENTICATED)
            self.user = None
            return
        self.user = user
        self.user_id: int = user.pk
        self.user_dict = user_to_dict(user)
        await self.channel_layer.group_add(user_group_name(user.pk), self.channel_name)
        watcher().register(self)
        slug = self.scope["url_route"]["kwargs"].get("slug")
        if slug is not None:
            await self.handle({"type": "join", "room": slug})

    async def disconnect(self, code: int) -> None:
        self.closed = True
        if getattr(self, "user", None) is None:
            return
        watcher().unregister(self)
        for cursor in list(self.cursors.values()):
            await self._unsubscribe(cursor)
        try:
            await self.channel_layer.group_discard(user_group_name(self.user_id), self.channel_name)
        except Exception:
            logger.warning("group_discard failed on disconnect", exc_info=True)

    # --- client frames ----------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.user is None:
            return
        self.last_frame_at = time.monotonic()
        raw = text_data if text_data is not None else bytes_data or b""
        size = len(raw.encode()) if isinstance(raw, str) else len(raw)
        if size > settings.CHAT_MAX_FRAME_BYTES:
            await self.close(code=CLOSE_TOO_LARGE)
            return
        try:
            frame = _loads(raw)
        except ValueError:
            await self.send_error(None, None, BadRequest("Frames must be JSON objects."))
            return
        if not isinstance(frame, dict):
            await self.send_error(None, None, BadRequest("Frames must be JSON objects."))
            return
        await self.handle(frame)

    async def handle(self, frame: dict[str, Any]) -> None:
        ref = frame.get("ref")
        room = frame.get("room") if isinstance(frame.get("room"), str) else None
        try:
            if ref is not None and (not isinstance(ref, str) or not 1 <= len(ref) <= 64):
                ref = None
                raise BadRequest("ref must be a string of 1-64 characters.")
            kind = frame.get("type")
            handler = self.handlers.get(kind) if isinstance(kind, str) else None
            if handler is None:
                raise BadRequest(f"Unknown frame type {kind!r}.")
            await handler(self, frame, ref)
        except ChatError as exc:
            await self.send_error(ref, room, exc)
        except DatabaseError:
            logger.warning("database error handling a %r frame", frame.get("type"), exc_info=True)
            await self.send_error(ref, room, Unavailable())
        except Exception:
            # Never a 1011 for one frame: the client gets an error it can retry
            # (sends are idempotent by client_id) and the socket stays open.
            logger.exception("unexpected failure handling a %r frame", frame.get("type"))
            await self.send_error(ref, room, Unavailable("Something went wrong on our side; try again."))

    async def on_join(self, frame: dict[str, Any], ref: str | None) -> None:
        slug = self._slug(frame)
        after = frame.get("after")
        if after is not None and (isinstance(after, bool) or not isinstance(after, int) or after < 0):
            raise BadRequest("after must be a non-negative integer.")
        if after is not None:
            after = min(after, MAX_SEQ)
        existing = self.cursors.get(slug)
        if existing is not None:
            await self._rejoin(existing, after, ref)
            return
        group = room_group_name(slug)
        # Subscribe before reading last_seq and the replay: whatever commits in
        # between arrives twice and the cursor drops the repeat; nothing falls
        # in a hole.
        await self.channel_layer.group_add(group, self.channel_name)
        try:
            result = await db.join_room(user=self.user, slug=slug, after=after, limit=settings.CHAT_REPLAY_LIMIT)
        except BaseException:
            await self.channel_layer.group_discard(group, self.channel_name)
            raise
        async with self.lock:
            for message in result.replay:
                await self._deliver_message(message)
            # After a full replay the socket holds everything up to last_seq;
            # after a partial one (recovered: false) live delivery resumes from
            # last_seq + 1 and the client pages the middle over REST.
            self.cursors[slug] = RoomCursor(room_id=result.room_id, slug=slug, delivered=result.last_seq)
        if await presence().add(slug, self.user_id, self.channel_name):
            await announce_presence(slug, self.user_id, online=True)
        joined: dict[str, Any] = {"type": "joined", "room": slug, "last_seq": result.last_seq, **self._ref(ref)}
        if after is not None:
            joined["recovered"] = not result.more
        joined["online"] = await self._online(slug)
        await self.send_frame(joined)

    async def _rejoin(self, cursor: RoomCursor, after: int | None, ref: str | None) -> None:
        """`join` on a socket already in the room: live delivery is untouched, so
        only the replay the client asked for (seq > after, up to what this socket
        has delivered) is sent again before `joined`."""
        more = False
        async with self.lock:
            if after is not None and after < cursor.delivered:
                limit = settings.CHAT_REPLAY_LIMIT
                rows = await db.fetch_range(
                    room_id=cursor.room_id, slug=cursor.slug, after=after, up_to=cursor.delivered, limit=limit + 1
                )
                more = len(rows) > limit
                for message in rows[:limit]:
                    await self._deliver_message(message)
            joined: dict[str, Any] = {"type": "joined", "room": cursor.slug, "last_seq": cursor.delivered}
        joined.update(self._ref(ref))
        if after is not None:
            joined["recovered"] = not more
        joined["online"] = await self._online(cursor.slug)
        await self.send_frame(joined)

    async def on_leave(self, frame: dict[str, Any], ref: str | None) -> None:
        slug = self._slug(frame)
        cursor = self.cursors.get(slug)
        if cursor is None:
            raise NotJoined("This socket has not joined that room.")
        await self._unsubscribe(cursor)
        await self.send_frame({"type": "left", "room": slug, **self._ref(ref)})

    async def on_send(self, frame: dict[str, Any], ref: str | None) -> None:
        cursor = self._joined(frame)
        if "client_id" not in frame:
            raise BadRequest("client_id is required, so a retry cannot create a duplicate.")
        client_id = frame.get("client_id")
        if not isinstance(client_id, str) or not 1 <= len(client_id) <= 64:
            raise BadRequest("client_id must be a string of 1-64 characters.")
        posted, message = await writer().submit(
            NewMessage(room_id=cursor.room_id, author=self.me, body=frame.get("body"), client_id=client_id)
        )
        if isinstance(posted.error, RateLimited):
            self.flood += 1
            if self.flood > FLOOD_TOLERANCE:
                await self.close(code=CLOSE_FLOODING)
                return
        if posted.error is not None:
            raise posted.error
        self.flood = 0
        await self.send_frame({"type": "ack", **self._ref(ref), "message": message})

    async def on_typing(self, frame: dict[str, Any], ref: str | None) -> None:
        cursor = self._joined(frame)
        await self.channel_layer.group_send(
            room_group_name(cursor.slug), {"type": "chat.typing", "room": cursor.slug, "user": self.user_dict}
        )

    async def on_read(self, frame: dict[str, Any], ref: str | None) -> None:
        cursor = self._joined(frame)
        seq = frame.get("seq")
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
            raise BadRequest("seq must be a non-negative integer.")
        await db.mark_read(user=self.user, room_id=cursor.room_id, seq=min(seq, MAX_SEQ))

    async def on_ping(self, frame: dict[str, Any], ref: str | None) -> None:
        await self.send_frame({"type": "pong", **self._ref(ref)})

    handlers = {
        "join": on_join,
        "leave": on_leave,
        "send": on_send,
        "typing": on_typing,
        "read": on_read,
        "ping": on_ping,
    }

    # --- channel-layer events --------------------------------------------

    async def chat_message(self, event: dict[str, Any]) -> None:
        cursor = self.cursors.get(event["message"]["room"])
        if cursor is None:
            return
        async with self.lock:
            await cursor.offer(event["message"], self._deliver_message)
            if cursor.has_gap:
                self.schedule_repair(cursor, wait=settings.CHAT_GAP_WAIT)

    async def chat_message_updated(self, event: dict[str, Any]) -> None:
        await self._forward_update("message_updated", event)

    async def chat_message_deleted(self, event: dict[str, Any]) -> None:
        await self._forward_update("message_deleted", event)

    async def chat_typing(self, event: dict[str, Any]) -> None:
        if event["room"] in self.cursors and event["user"]["id"] != self.user_id:
            await self.send_frame({"type": "typing", "room": event["room"], "user": event["user"]})

    async def chat_presence(self, event: dict[str, Any]) -> None:
        # A user's own sockets already know they are online (joined.online).
        if event["room"] in self.cursors and event["user"]["id"] != self.user_id:
            await self.send_frame(
                {"type": "presence", "room": event["room"], "user": event["user"], "online": event["online"]}
            )

    async def chat_room_updated(self, event: dict[str, Any]) -> None:
        if event["room"]["slug"] in self.cursors:
            await self.send_frame({"type": "room_updated", "room": event["room"]})

    async def user_banned(self, event: dict[str, Any]) -> None:
        """A ban cuts this socket off the room at once; other rooms carry on."""
        cursor = self.cursors.get(event["slug"])
        if cursor is None:
            return
        await self._unsubscribe(cursor)
        await self.send_frame(
            {"type": "error", "room": event["slug"], "code": "forbidden", "detail": "You were banned from this room."}
        )

    async def user_left(self, event: dict[str, Any]) -> None:
        """The user left the room elsewhere (REST, another tab): every socket of theirs stops hearing it."""
        cursor = self.cursors.get(event["slug"])
        if cursor is not None:
            await self._unsubscribe(cursor)
            await self.send_frame({"type": "left", "room": event["slug"]})

    async def user_deactivated(self, event: dict[str, Any]) -> None:
        """The account was deactivated: leave every room (others see them go offline at once), then 4403."""
        for cursor in list(self.cursors.values()):
            await self._unsubscribe(cursor)
        await self.close(code=CLOSE_DEACTIVATED)

    # --- helpers -----------------------------------------------------------

    def schedule_repair(self, cursor: RoomCursor, *, wait: float, up_to: int | None = None) -> None:
        if cursor.repair is not None and not cursor.repair.done():
            return
        cursor.repair = asyncio.get_running_loop().create_task(self._repair(cursor, wait, up_to))

    async def _repair(self, cursor: RoomCursor, wait: float, up_to: int | None) -> None:
        if wait:
            await asyncio.sleep(wait)
        try:
            async with self.lock:
                if self.closed or self.cursors.get(cursor.slug) is not cursor:
                    return
                await cursor.fill_from_db(self._deliver_message, up_to=up_to)
        except Exception:
            # The watcher will notice the gap again and retry.
            logger.warning("gap repair in %s failed", cursor.slug, exc_info=True)
        finally:
            cursor.repair = None
        if cursor.has_gap and not self.closed:
            self.schedule_repair(cursor, wait=settings.CHAT_GAP_WAIT)

    async def _deliver_message(self, message: dict[str, Any]) -> None:
        await self.send_frame({"type": "message", "message": for_viewer(message, self.user_id)})

    async def _forward_update(self, kind: str, event: dict[str, Any]) -> None:
        if event["message"]["room"] in self.cursors:
            await self.send_frame({"type": kind, "message": for_viewer(event["message"], self.user_id)})

    async def _unsubscribe(self, cursor: RoomCursor) -> None:
        self.cursors.pop(cursor.slug, None)
        if cursor.repair is not None:
            cursor.repair.cancel()
        try:
            await self.channel_layer.group_discard(room_group_name(cursor.slug), self.channel_name)
            if await presence().remove(cursor.slug, self.user_id, self.channel_name):
                await announce_presence(cursor.slug, self.user_id, online=False)
        except Exception:
            logger.warning("leaving %s did not fully clean up", cursor.slug, exc_info=True)

    async def _online(self, slug: str) -> list[dict[str, Any]]:
        return await db.users_by_id(await presence().online(slug))

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        # Nothing more may be sent once the close is on its way (daphne logs
        # "send on a closed protocol" for every frame that tries).
        self.closed = True
        await super().close(code=code, reason=reason)

    async def close_idle(self) -> None:
        await self.close(code=CLOSE_IDLE)

    def _slug(self, frame: dict[str, Any]) -> str:
        slug = frame.get("room")
        if not isinstance(slug, str):
            raise BadRequest("room must be a room slug.")
        if not _slug_re.match(slug):
            raise NotFound("No such room.")
        return slug

    def _joined(self, frame: dict[str, Any]) -> RoomCursor:
        slug = self._slug(frame)
        cursor = self.cursors.get(slug)
        if cursor is None:
            raise NotJoined("Join the room on this socket first.")
        return cursor

    @property
    def me(self) -> User:
        """The socket's user; frames are only handled once authentication succeeded."""
        assert self.user is not None
        return self.user

    @staticmethod
    def _ref(ref: str | None) -> dict[str, str]:
        return {"ref": ref} if ref is not None else {}

    async def send_frame(self, data: dict[str, Any]) -> None:
        if not self.closed:
            await self.send(text_data=_dumps(data))

    async def send_error(self, ref: str | None, room: str | None, exc: ChatError) -> None:
        frame: dict[str, Any] = {"type": "error", **self._ref(ref)}
        if room is not None:
            frame["room"] = room
        frame["code"] = exc.code
        frame["detail"] = exc.detail
        if isinstance(exc, RateLimited):
            frame["retry_after"] = exc.retry_after
        await self.send_frame(frame)

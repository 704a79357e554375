"""The chat websocket: one socket per tab, any number of rooms.

Thin by design: parse and check the frame, call a service through
`messaging.db` or the writer, turn domain errors into `error` frames.
Realtime events reach the socket through its process's hub
(`messaging.fanout`), which subscribes once per room for all local sockets,
orders and repairs the room's messages and writes the encoded frames; the
socket itself has no channel of its own.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import Error as DatabaseError

from accounts.models import User
from accounts.serializers import user_to_dict
from audit.context import WEBSOCKET, set_path
from common.errors import BadRequest, ChatError, NotFound, NotJoined, RateLimited, Unavailable
from rooms.models import SLUG_RE

from . import db
from .fanout import Member, dumps, encode_message, hub
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


def _loads(raw: str | bytes) -> Any:
    # The standard parser, not orjson: orjson turns integers beyond 64 bits
    # into floats, and a client's `after` must stay an exact integer.
    return json.loads(raw)


def _has_lone_surrogate(frame: Any) -> bool:
    """True when a string in the parsed frame holds a lone UTF-16 surrogate.

    JSON lets `\\ud800` through (and json.loads decodes bytes with
    surrogatepass), but no such string can be stored or sent back as UTF-8.
    Iterative, as a frame may nest up to the parser's own limit.
    """
    stack = [frame]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


# The largest seq the database can hold; larger cursors mean "everything".
MAX_SEQ = 2**63 - 1


def _message_id(frame: dict[str, Any]) -> int:
    """A frame's `message_id`: a positive integer (else bad_request); beyond any id, NotFound."""
    message_id = frame.get("message_id")
    if isinstance(message_id, bool) or not isinstance(message_id, int) or message_id < 1:
        raise BadRequest("message_id must be a message id.")
    if message_id > MAX_SEQ:
        raise NotFound("No such message.")
    return message_id


class ChatConsumer(AsyncWebsocketConsumer):
    """Handles `/ws/chat/` and `/ws/chat/<slug>/` (implicit join on connect)."""

    rooms: dict[str, Member]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # Channels' AsyncConsumer would give every socket a channel of its own
        # and a second receive loop on it; here the process's hub hears every
        # room and user group once and writes to the socket directly
        # (messaging.fanout), so the socket only listens to its client.
        self.scope = scope
        # Whatever this socket does is audited as coming by websocket: the
        # variable reaches the database thread with every database_sync_to_async.
        set_path(WEBSOCKET)
        self.channel_layer = None
        self.base_send = send
        self.closed = True
        try:
            # One source only, so no await_many_dispatch and its extra task per socket.
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass
        finally:
            if not self.closed:
                # The server cancelled us (shutdown) or the loop failed.
                try:
                    await self.disconnect(CLOSE_INTERNAL_ERROR)
                except Exception:
                    logger.warning("cleanup after a failed chat socket was incomplete", exc_info=True)

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Unlike AsyncConsumer.dispatch, no close_old_connections() hop per
        # frame: every database call goes through database_sync_to_async,
        # which already does it.
        kind = message["type"]
        if kind == "websocket.receive":
            await self.websocket_receive(message)
        elif kind == "websocket.connect":
            await self.websocket_connect(message)
        elif kind == "websocket.disconnect":
            await self.websocket_disconnect(message)

    async def connect(self) -> None:
        self.rooms = {}
        self.last_frame_at = time.monotonic()
        self.flood = 0
        self.closed = False
        user = self.scope.get("user")
        await self.accept()
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_NOT_AUTHENTICATED)
            self.user = None
            return
        self.user = user
        self.user_id: int = user.pk
        self.user_dict = user_to_dict(user)
        await hub().connect(self)
        slug = self.scope["url_route"]["kwargs"].get("slug")
        if slug is not None:
            await self.handle({"type": "join", "room": slug})

    async def disconnect(self, code: int) -> None:
        self.closed = True
        if getattr(self, "user", None) is None:
            return
        members, self.rooms = list(self.rooms.values()), {}
        await hub().disconnect(self, members)

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
        except (ValueError, RecursionError):
            # RecursionError: thousands of nested brackets, which the json
            # module refuses that way rather than with a ValueError.
            await self.send_error(None, None, BadRequest("Frames must be JSON objects."))
            return
        if not isinstance(frame, dict):
            await self.send_error(None, None, BadRequest("Frames must be JSON objects."))
            return
        if _has_lone_surrogate(frame):
            # Checked before anything is echoed: the error frame itself could not be encoded.
            await self.send_error(None, None, BadRequest("Frames must be valid Unicode (no lone surrogates)."))
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
        """Join a room: register with the hub first, then read last_seq and the replay, then go live.

        Registering before the read means whatever commits in between is
        queued for this socket and arrives after `joined` (minus what the
        replay already held), so nothing falls in a hole or arrives twice.
        """
        slug = self._slug(frame)
        after = frame.get("after")
        if after is not None and (isinstance(after, bool) or not isinstance(after, int) or after < 0):
            raise BadRequest("after must be a non-negative integer.")
        if after is not None:
            after = min(after, MAX_SEQ)
        existing = self.rooms.get(slug)
        if existing is not None:
            await self._rejoin(existing, after, ref)
            return
        the_hub = hub()
        member = await the_hub.join(slug, self)
        try:
            result = await db.join_room(user=self.me, slug=slug, after=after, limit=settings.CHAT_REPLAY_LIMIT)
        except BaseException:
            await the_hub.leave(member)
            raise
        room = member.room
        room.start(result.room_id, result.last_seq)
        self.rooms[slug] = member
        room.arrive(member)
        for message in result.replay:
            await self.write(encode_message("message", message, self.user_id))
        # After a full replay the socket holds everything up to last_seq;
        # after a partial one (recovered: false) live delivery resumes from
        # last_seq + 1 and the client pages the middle over REST.
        joined: dict[str, Any] = {"type": "joined", "room": slug, "last_seq": result.last_seq, **self._ref(ref)}
        if after is not None:
            joined["recovered"] = not result.more
        joined["online"] = room.online_users()
        await self.send_frame(joined)
        await room.activate(member, result.last_seq)

    async def _rejoin(self, member: Member, after: int | None, ref: str | None) -> None:
        """`join` on a socket already in the room: live delivery is untouched, so
        only the replay the client asked for (seq > after, up to what this socket
        has delivered) is sent again before `joined`."""
        room = member.room
        more = False
        room.hold(member)
        try:
            if after is not None and after < member.delivered and room.room_id is not None:
                limit = settings.CHAT_REPLAY_LIMIT
                rows = await db.fetch_range(
                    room_id=room.room_id, slug=room.slug, after=after, up_to=member.delivered, limit=limit + 1
                )
                more = len(rows) > limit
                for message in rows[:limit]:
                    await self.write(encode_message("message", message, self.user_id))
            joined: dict[str, Any] = {"type": "joined", "room": room.slug, "last_seq": member.delivered}
            joined.update(self._ref(ref))
            if after is not None:
                joined["recovered"] = not more
            joined["online"] = room.online_users()
            await self.send_frame(joined)
        finally:
            await room.release(member)

    async def on_leave(self, frame: dict[str, Any], ref: str | None) -> None:
        slug = self._slug(frame)
        if slug not in self.rooms:
            raise NotJoined("This socket has not joined that room.")
        await self._unsubscribe(slug)
        await self.send_frame({"type": "left", "room": slug, **self._ref(ref)})

    async def on_send(self, frame: dict[str, Any], ref: str | None) -> None:
        member = self._joined(frame)
        if "client_id" not in frame:
            raise BadRequest("client_id is required, so a retry cannot create a duplicate.")
        client_id = frame.get("client_id")
        if not isinstance(client_id, str) or not 1 <= len(client_id) <= 64:
            raise BadRequest("client_id must be a string of 1-64 characters.")
        assert member.room.room_id is not None
        posted, message = await writer().submit(
            NewMessage(
                room_id=member.room.room_id,
                author=self.me,
                body=frame.get("body"),
                client_id=client_id,
                reply_to=frame.get("reply_to"),
                attachments=frame.get("attachments"),
            )
        )
        if isinstance(posted.error, RateLimited):
            self.flood += 1
            if self.flood > FLOOD_TOLERANCE:
                await self.close(code=CLOSE_FLOODING)
                return
        if posted.error is not None:
            raise posted.error
        self.flood = 0
        if not posted.created and posted.message_id is not None:
            # A retry: the original as it is now, reactions (with `me`) included.
            message = await db.message_for(user=self.me, message_id=posted.message_id)
        await self.send_frame({"type": "ack", **self._ref(ref), "message": message})

    async def on_typing(self, frame: dict[str, Any], ref: str | None) -> None:
        member = self._joined(frame)
        await hub().group_send(
            member.room.group, {"type": "chat.typing", "room": member.room.slug, "user": self.user_dict}
        )

    async def on_read(self, frame: dict[str, Any], ref: str | None) -> None:
        member = self._joined(frame)
        seq = frame.get("seq")
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
            raise BadRequest("seq must be a non-negative integer.")
        assert member.room.room_id is not None
        await db.mark_read(user=self.me, room_id=member.room.room_id, seq=min(seq, MAX_SEQ))

    async def on_react(self, frame: dict[str, Any], ref: str | None) -> None:
        """Add or remove a reaction; no reply (every socket in the room gets `reaction`), or `error`."""
        member = self._joined(frame)
        message_id = _message_id(frame)
        on = frame.get("on")
        if not isinstance(on, bool):
            raise BadRequest("on must be true or false.")
        assert member.room.room_id is not None
        await db.react(
            user=self.me, room_id=member.room.room_id, message_id=message_id, emoji=frame.get("emoji"), on=on
        )

    async def on_delete(self, frame: dict[str, Any], ref: str | None) -> None:
        """Delete a message (its author, or the room's owner or a moderator); no reply but `message_deleted`.

        Every socket in the room, this one included, gets `message_deleted`;
        a failure is an `error` frame. Deleting twice is a no-op.
        """
        member = self._joined(frame)
        message_id = _message_id(frame)
        assert member.room.room_id is not None
        await db.delete_message(user=self.me, room_id=member.room.room_id, message_id=message_id)

    async def on_ping(self, frame: dict[str, Any], ref: str | None) -> None:
        await self.send_frame({"type": "pong", **self._ref(ref)})

    handlers = {
        "join": on_join,
        "leave": on_leave,
        "send": on_send,
        "typing": on_typing,
        "read": on_read,
        "react": on_react,
        "delete": on_delete,
        "ping": on_ping,
    }

    # --- events for this user, from the hub ------------------------------------

    async def on_user_event(self, event: dict[str, Any]) -> None:
        """An event for every socket of this user (sent to the user's group)."""
        handler = self.user_handlers.get(event["type"])
        if handler is None:
            logger.warning("unknown user event %r", event["type"])
            return
        if not self.closed:
            await handler(self, event)

    async def user_banned(self, event: dict[str, Any]) -> None:
        """A ban cuts this socket off the room at once; other rooms carry on."""
        if event["slug"] not in self.rooms:
            return
        await self._unsubscribe(event["slug"])
        await self.send_frame(
            {"type": "error", "room": event["slug"], "code": "forbidden", "detail": "You were banned from this room."}
        )

    async def user_left(self, event: dict[str, Any]) -> None:
        """The user left the room elsewhere (REST, another tab): every socket of theirs stops hearing it."""
        if event["slug"] in self.rooms:
            await self._unsubscribe(event["slug"])
            await self.send_frame({"type": "left", "room": event["slug"]})

    async def user_deactivated(self, event: dict[str, Any]) -> None:
        """The account was deactivated: leave every room (others see them go offline at once), then 4403."""
        for slug in list(self.rooms):
            await self._unsubscribe(slug)
        await self.close(code=CLOSE_DEACTIVATED)

    async def user_mention(self, event: dict[str, Any]) -> None:
        """This user was mentioned: every socket of theirs hears it, whether or not it joined the room."""
        message = event["message"]
        if message.get("client_id") is not None and message["author"]["id"] != self.user_id:
            message = {**message, "client_id": None}
        await self.write(dumps({"type": "mention", "room": event["room"], "message": message}))

    user_handlers = {
        "user.banned": user_banned,
        "user.left": user_left,
        "user.deactivated": user_deactivated,
        "user.mention": user_mention,
    }

    # --- helpers -----------------------------------------------------------

    async def _unsubscribe(self, slug: str) -> None:
        member = self.rooms.pop(slug, None)
        if member is None:
            return
        try:
            await hub().leave(member)
        except Exception:
            logger.warning("leaving %s did not fully clean up", slug, exc_info=True)

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

    def _joined(self, frame: dict[str, Any]) -> Member:
        slug = self._slug(frame)
        member = self.rooms.get(slug)
        if member is None:
            raise NotJoined("Join the room on this socket first.")
        return member

    @property
    def me(self) -> User:
        """The socket's user; frames are only handled once authentication succeeded."""
        assert self.user is not None
        return self.user

    @staticmethod
    def _ref(ref: str | None) -> dict[str, str]:
        return {"ref": ref} if ref is not None else {}

    async def write(self, text: str) -> None:
        """Write one encoded frame (the hub's fan-out and this consumer's replies)."""
        if not self.closed:
            await self.base_send({"type": "websocket.send", "text": text})

    async def send_frame(self, data: dict[str, Any]) -> None:
        await self.write(dumps(data))

    async def send_error(self, ref: str | None, room: str | None, exc: ChatError) -> None:
        frame: dict[str, Any] = {"type": "error", **self._ref(ref)}
        if room is not None:
            frame["room"] = room
        frame["code"] = exc.code
        frame["detail"] = exc.detail
        if isinstance(exc, RateLimited):
            frame["retry_after"] = exc.retry_after
        await self.send_frame(frame)

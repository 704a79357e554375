"""The consumer's database calls, each one trip to the database thread.

Consumers stay free of the ORM: they await these, which call services and
selectors through `database_sync_to_async` (which also closes connections
that are too old or broken, as the Channels docs recommend).
"""

from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async

from accounts.models import User
from accounts.serializers import user_to_dict
from common.errors import NotFound
from rooms.models import Room
from rooms.selectors import room_check_readable
from rooms.services import read_marker_set, room_join

from .models import Message
from .selectors import message_get, messages_after, messages_to_dicts, reactions_for
from .serializers import message_to_dict
from .services import message_delete, reaction_set


@dataclass
class JoinResult:
    room_id: int
    slug: str
    last_seq: int
    replay: list[dict[str, Any]]
    more: bool


@database_sync_to_async
def join_room(*, user: User, slug: str, after: int | None, limit: int) -> JoinResult:
    """Check access, make the user a member of a public room, read last_seq and the replay."""
    room = Room.objects.filter(slug=slug).first()
    if room is None:
        raise NotFound("No such room.")
    membership = room_check_readable(room=room, user=user)
    if membership is None:
        room_join(room=room, user=user)
    last_seq = Room.objects.filter(pk=room.pk).values_list("last_seq", flat=True).get()
    replay: list[dict[str, Any]] = []
    more = False
    if after is not None and after < last_seq:
        rows = messages_after(room_id=room.pk, after=after, limit=limit + 1, up_to=last_seq)
        more = len(rows) > limit
        replay = messages_to_dicts(rows[:limit], viewer_id=user.pk, room_slug=slug)
    return JoinResult(room.pk, slug, last_seq, replay, more)


@database_sync_to_async
def fetch_range(*, room_id: int, slug: str, after: int, up_to: int | None, limit: int) -> list[dict[str, Any]]:
    # Shared by every socket of the process: `client_id` is hidden per socket
    # when encoding, `me` stays false (see docs/protocol.md, "Reactions").
    rows = messages_after(room_id=room_id, after=after, limit=limit, up_to=up_to)
    reactions = reactions_for(message_ids=[m.pk for m in rows], viewer_id=None)
    return [message_to_dict(m, room_slug=slug, reactions=reactions.get(m.pk, [])) for m in rows]


@database_sync_to_async
def message_for(*, user: User, message_id: int) -> dict[str, Any]:
    """One message as `user` sees it now (a retried send's ack: it may have replies' quotes and reactions)."""
    return messages_to_dicts([message_get(message_id=message_id)], viewer_id=user.pk)[0]


@database_sync_to_async
def react(*, user: User, room_id: int, message_id: int, emoji: Any, on: bool) -> None:
    reaction_set(user=user, message_id=message_id, emoji=emoji, on=on, room_id=room_id)


@database_sync_to_async
def delete_message(*, user: User, room_id: int, message_id: int) -> None:
    """The websocket `delete`: the message must be in the socket's room `room_id`."""
    message = Message.objects.filter(pk=message_id, room_id=room_id).first()
    if message is None:
        raise NotFound("No such message.")
    message_delete(message=message, actor=user)


@database_sync_to_async
def last_seqs(room_ids: list[int]) -> dict[int, int]:
    return dict(Room.objects.filter(pk__in=room_ids).values_list("pk", "last_seq"))


@database_sync_to_async
def mark_read(*, user: User, room_id: int, seq: int) -> None:
    read_marker_set(room=Room.objects.get(pk=room_id), user=user, seq=seq)


@database_sync_to_async
def users_by_id(user_ids: set[int]) -> list[dict[str, Any]]:
    return [user_to_dict(u) for u in User.objects.filter(pk__in=user_ids).order_by("username")]

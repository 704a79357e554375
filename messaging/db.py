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

from .selectors import messages_after
from .serializers import message_to_dict


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
        replay = [message_to_dict(m, room_slug=slug) for m in rows[:limit]]
    return JoinResult(room.pk, slug, last_seq, replay, more)


@database_sync_to_async
def fetch_range(*, room_id: int, slug: str, after: int, up_to: int | None, limit: int) -> list[dict[str, Any]]:
    return [
        message_to_dict(m, room_slug=slug)
        for m in messages_after(room_id=room_id, after=after, limit=limit, up_to=up_to)
    ]


@database_sync_to_async
def last_seqs(room_ids: list[int]) -> dict[int, int]:
    return dict(Room.objects.filter(pk__in=room_ids).values_list("pk", "last_seq"))


@database_sync_to_async
def mark_read(*, user: User, room_id: int, seq: int) -> None:
    read_marker_set(room=Room.objects.get(pk=room_id), user=user, seq=seq)


@database_sync_to_async
def users_by_id(user_ids: set[int]) -> list[dict[str, Any]]:
    return [user_to_dict(u) for u in User.objects.filter(pk__in=user_ids).order_by("username")]

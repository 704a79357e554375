"""Reads of message history. Every query walks the (room, seq) unique index."""

from django.db.models import QuerySet

from accounts.models import User
from common.errors import NotFound
from rooms.models import Room

from .models import Message

MAX_PAGE = 200


def _base(room: Room) -> QuerySet[Message]:
    return Message.objects.filter(room=room).select_related("author")


def messages_page(
    *, room: Room, before: int | None = None, after: int | None = None, limit: int = 50
) -> list[Message]:
    """One page of history, ascending by seq.

    No cursor: the newest `limit`. `before=N`: the newest below N. `after=N`:
    the oldest above N. Both: the oldest above `after` and below `before`.
    """
    qs = _base(room)
    if before is not None:
        qs = qs.filter(seq__lt=before)
    if after is not None:
        return list(qs.filter(seq__gt=after).order_by("seq")[:limit])
    page = list(qs.order_by("-seq")[:limit])
    page.reverse()
    return page


def messages_after(*, room_id: int, after: int, limit: int, up_to: int | None = None) -> list[Message]:
    """Messages with seq > after (and <= up_to), oldest first: replay and gap repair."""
    qs = Message.objects.filter(room_id=room_id, seq__gt=after).select_related("author", "room")
    if up_to is not None:
        qs = qs.filter(seq__lte=up_to)
    return list(qs.order_by("seq")[:limit])


def message_has_older(*, room: Room, seq: int) -> bool:
    return Message.objects.filter(room=room, seq__lt=seq).exists()


def message_get(*, message_id: int) -> Message:
    message = Message.objects.select_related("author", "room").filter(pk=message_id).first()
    if message is None:
        raise NotFound("No such message.")
    return message


def message_get_by_client_id(*, room: Room, author: User, client_id: str) -> Message | None:
    return (
        Message.objects.select_related("author", "room")
        .filter(room=room, author=author, client_id=client_id)
        .first()
    )

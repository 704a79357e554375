from datetime import datetime
from typing import Any

from accounts.models import User
from accounts.serializers import user_to_dict

from .models import Message


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.isoformat().replace("+00:00", "Z")


def message_to_dict(message: Message, *, room_slug: str | None = None) -> dict[str, Any]:
    """The full message as stored, `client_id` included; `for_viewer` hides it from others."""
    return message_dict(
        id=message.pk,
        room_slug=room_slug or message.room.slug,
        seq=message.seq,
        author=message.author,
        body=message.body,
        client_id=message.client_id,
        created_at=message.created_at,
        edited_at=message.edited_at,
        deleted_at=message.deleted_at,
    )


def message_dict(
    *,
    id: int,
    room_slug: str,
    seq: int,
    author: User,
    body: str,
    client_id: str | None,
    created_at: datetime,
    edited_at: datetime | None = None,
    deleted_at: datetime | None = None,
) -> dict[str, Any]:
    """`message_to_dict` from the columns, for writers that never build a Message (group commit)."""
    return {
        "id": id,
        "room": room_slug,
        "seq": seq,
        "author": user_to_dict(author),
        "body": "" if deleted_at else body,
        "client_id": client_id,
        "created_at": iso(created_at),
        "edited_at": iso(edited_at),
        "deleted": deleted_at is not None,
    }


def for_viewer(data: dict[str, Any], viewer_id: int | None) -> dict[str, Any]:
    """`client_id` is shown to the message's author only."""
    if data.get("client_id") is not None and data["author"]["id"] != viewer_id:
        return {**data, "client_id": None}
    return data

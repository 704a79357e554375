from datetime import datetime
from typing import Any

from accounts.serializers import user_to_dict

from .models import Message


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.isoformat().replace("+00:00", "Z")


def message_to_dict(message: Message, *, room_slug: str | None = None) -> dict[str, Any]:
    """The full message as stored, `client_id` included; `for_viewer` hides it from others."""
    return {
        "id": message.pk,
        "room": room_slug or message.room.slug,
        "seq": message.seq,
        "author": user_to_dict(message.author),
        "body": "" if message.deleted_at else message.body,
        "client_id": message.client_id,
        "created_at": iso(message.created_at),
        "edited_at": iso(message.edited_at),
        "deleted": message.deleted_at is not None,
    }


def for_viewer(data: dict[str, Any], viewer_id: int | None) -> dict[str, Any]:
    """`client_id` is shown to the message's author only."""
    if data.get("client_id") is not None and data["author"]["id"] != viewer_id:
        return {**data, "client_id": None}
    return data

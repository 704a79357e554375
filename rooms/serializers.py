from typing import Any

from .models import Room


def room_to_dict(room: Room) -> dict[str, Any]:
    """The room's public fields (used in `room_updated` and, with per-user fields, over REST).

    `name` is `Room.title`: for a DM read through `rooms_visible_to`, the other
    participants' names as that viewer sees them; otherwise the stored name.
    """
    return {
        "slug": room.slug,
        "kind": room.kind,
        "name": room.title,
        "description": room.description,
        "is_private": room.is_private,
        "is_locked": room.is_locked,
        "last_seq": room.last_seq,
    }

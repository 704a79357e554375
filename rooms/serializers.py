from typing import Any

from .models import Room


def room_to_dict(room: Room) -> dict[str, Any]:
    """Room fields that are the same for every viewer (used in `room_updated`)."""
    return {
        "slug": room.slug,
        "name": room.name,
        "description": room.description,
        "is_private": room.is_private,
        "is_locked": room.is_locked,
        "last_seq": room.last_seq,
    }

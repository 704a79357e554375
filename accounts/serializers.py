from typing import Any

from .models import User


def user_to_dict(user: User) -> dict[str, Any]:
    """The public shape of a user in frames and REST (`author`, `online`, ...)."""
    return {"id": user.pk, "username": user.username, "display_name": user.get_display_name()}

"""Realtime side effects of account changes made anywhere (admin, shell, API)."""

from typing import Any

from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from common.realtime import group_send_sync

from .models import User


@receiver(post_save, sender=User)
def close_sockets_of_deactivated_user(sender: type[User], instance: User, **kwargs: Any) -> None:
    """A deactivated user loses every open socket, on every server process, at once (4403)."""
    if instance.is_active or kwargs.get("created"):
        return
    group = instance.group_name
    event = {"type": "user.deactivated", "user_id": instance.pk}
    transaction.on_commit(lambda: group_send_sync(group, event))

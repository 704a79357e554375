"""Side effects of account changes made anywhere (admin, shell, API): sockets closed, the audit trail."""

from typing import Any

from django.db import transaction
from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver

from audit.services import Action, audit_record, user_target
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


# Set on an instance whose change of `is_active` accounts.services.user_set_active
# has already audited (with its actor), so the fallback below does not record it twice.
AUDITED = "_active_change_audited"
_WAS_ACTIVE = "_was_active"


@receiver(pre_save, sender=User)
def remember_whether_active(sender: type[User], instance: User, **kwargs: Any) -> None:
    """Read the stored `is_active` before a save that may change it (not for saves of other fields)."""
    update_fields = kwargs.get("update_fields")
    if instance.pk is None or (update_fields is not None and "is_active" not in update_fields):
        return
    stored = User.objects.filter(pk=instance.pk).values_list("is_active", flat=True).first()
    setattr(instance, _WAS_ACTIVE, stored)


@receiver(post_save, sender=User)
def audit_activation_saved_elsewhere(sender: type[User], instance: User, **kwargs: Any) -> None:
    """Audit a (de)activation that bypassed `user_set_active` (a shell, a script): no path skips the trail.

    The actor is unknown there, so it is recorded as nobody; the path is
    whatever entry point is current (`admin` outside any request: a shell or a command).
    """
    was_active = instance.__dict__.pop(_WAS_ACTIVE, None)
    audited = instance.__dict__.pop(AUDITED, False)
    if kwargs.get("created") or was_active is None or was_active == instance.is_active or audited:
        return
    audit_record(
        actor=None,
        action=Action.USER_REACTIVATED if instance.is_active else Action.USER_DEACTIVATED,
        target=user_target(instance),
        target_user_id=instance.pk,
    )

"""Writes about accounts that moderation cares about."""

from django.db import transaction

from audit.services import Action, audit_record, user_target

from .models import User
from .signals import AUDITED


def user_set_active(*, user: User, actor: User | None, active: bool) -> bool:
    """Deactivate (or reactivate) an account; returns whether anything changed.

    Deactivating closes every open socket of the user on every server
    process (4403, by the post_save signal in accounts.signals, on commit).
    Both are recorded in the audit trail in the same transaction. One save
    per user, never `QuerySet.update()`, so the signal always runs.
    """
    with transaction.atomic():
        current = User.objects.select_for_update().get(pk=user.pk)
        if current.is_active == active:
            user.is_active = active
            return False
        current.is_active = active
        setattr(current, AUDITED, True)  # recorded below, with the actor
        current.save(update_fields=["is_active"])
        user.is_active = active
        audit_record(
            actor=actor,
            action=Action.USER_REACTIVATED if active else Action.USER_DEACTIVATED,
            target=user_target(current),
            target_user_id=current.pk,
        )
    return True

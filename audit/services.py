"""The one writer of the audit trail."""

from typing import Any

from .context import current_path
from .models import AuditEntry

Action = AuditEntry.Action


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def audit_record(
    *,
    actor: Any,
    action: str,
    target: str,
    room_id: int | None = None,
    target_user_id: int | None = None,
    message_id: int | None = None,
    detail: str = "",
) -> AuditEntry:
    """Record one moderation action, by whatever path (`audit.context`) it came.

    Call it inside the action's own transaction, after the change is made and
    known to be real (not a no-op): the row then commits or rolls back with it.
    `actor` is the user who acted (None when nobody did, e.g. a script).
    """
    return AuditEntry.objects.create(
        actor_id=getattr(actor, "pk", None),
        action=action,
        target=_short(target),
        room_id=room_id,
        target_user_id=target_user_id,
        message_id=message_id,
        detail=_short(detail),
        path=current_path(),
    )


def user_target(user: Any) -> str:
    """How a user is named in `target`: "@username"."""
    return f"@{user.username}"

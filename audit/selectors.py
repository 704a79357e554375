"""Reads of the audit trail."""

from django.db.models import QuerySet

from .models import AuditEntry


def audit_entries(*, room_id: int | None = None) -> QuerySet[AuditEntry]:
    """Entries newest first (by id, the order they were recorded), with actor and target user joined in."""
    qs = AuditEntry.objects.select_related("actor", "target_user", "room").order_by("-id")
    if room_id is not None:
        qs = qs.filter(room_id=room_id)
    return qs


def audit_page(*, room_id: int, before: int | None = None, limit: int = 50) -> list[AuditEntry]:
    """One page of a room's trail, newest first: entries with an id below `before` (keyset, no OFFSET)."""
    qs = audit_entries(room_id=room_id)
    if before is not None:
        qs = qs.filter(pk__lt=before)
    return list(qs[:limit])

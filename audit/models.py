from django.conf import settings
from django.db import models
from django.utils import timezone

from . import context


class AuditEntry(models.Model):
    """One moderation action: who (`actor`), what (`action`), whom (`target`), when (`at`), how (`path`).

    Written only by `audit.services.audit_record`, which the domain services
    call inside the transaction of the action itself: the row commits or rolls
    back with it. Rows are never changed afterwards.

    This app sits below accounts, rooms and messaging (pyproject.toml's
    import-linter layers) so that each of them can record what it does; it
    names their models only by string, and a message only by id (a message is
    never hard-deleted on its own, and its room is kept here as a foreign key).
    """

    class Action(models.TextChoices):
        MESSAGE_DELETED = "message_deleted", "message deleted"
        MESSAGE_RESTORED = "message_restored", "message restored"
        ROOM_LOCKED = "room_locked", "room locked"
        ROOM_UNLOCKED = "room_unlocked", "room unlocked"
        USER_BANNED = "user_banned", "user banned"
        USER_UNBANNED = "user_unbanned", "ban lifted"
        ROLE_CHANGED = "role_changed", "role changed"
        MEMBER_ADDED = "member_added", "member added"
        MEMBER_REMOVED = "member_removed", "member removed"
        USER_DEACTIVATED = "user_deactivated", "user deactivated"
        USER_REACTIVATED = "user_reactivated", "user reactivated"
        REPORT_RESOLVED = "report_resolved", "report resolved"

    class Path(models.TextChoices):
        WEBSOCKET = context.WEBSOCKET, "websocket"
        REST = context.REST, "REST API"
        # Also a shell or a management command on the server: staff's back office.
        ADMIN = context.ADMIN, "admin"

    at = models.DateTimeField(default=timezone.now)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    action = models.CharField(max_length=32, choices=Action.choices)
    # Null for actions on an account (deactivation), which belong to no room.
    room = models.ForeignKey("rooms.Room", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # Whom, as people read it: "@bob", "message #12 (seq 3) by @bob", "report #4 on message #12 (seq 3)".
    target = models.CharField(max_length=200)
    target_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    message_id = models.BigIntegerField(null=True, blank=True)
    # What changed, when the action alone does not say: "member → moderator", "delete".
    detail = models.CharField(max_length=200, blank=True)
    path = models.CharField(max_length=10, choices=Path.choices)

    class Meta:
        verbose_name = "audit entry"
        verbose_name_plural = "audit entries"
        ordering = ["-id"]
        indexes = [
            # A room's trail, newest first, by keyset on id: GET /api/rooms/<slug>/audit/.
            models.Index(fields=["room", "-id"], name="audit_room_newest"),
            models.Index(fields=["at"], name="audit_at"),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.target}"

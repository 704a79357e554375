import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from rooms.models import Room


class Message(models.Model):
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    seq = models.BigIntegerField()
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="messages")
    body = models.TextField()
    # `body` rendered (messaging.markdown) and sanitized on every write; "" once deleted.
    html = models.TextField(blank=True, default="", db_default="")
    # NULL, not "", means "no key": the partial unique constraint skips NULLs.
    client_id = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    created_at = models.DateTimeField(auto_now_add=True)
    edited_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    deleted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # A message in the same room (checked by the services); messages are only
    # soft-deleted, so the quote stays, showing the original as deleted.
    reply_to = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replies", db_index=False
    )

    class Meta:
        ordering = ["room", "seq"]
        constraints = [
            # Its index is what makes every history page an index range scan:
            # constant time at any depth.
            models.UniqueConstraint(fields=["room", "seq"], name="message_room_seq_unique"),
            models.UniqueConstraint(
                fields=["room", "author", "client_id"],
                condition=Q(client_id__isnull=False),
                name="message_idempotency_key",
            ),
        ]
        # Partial: most messages reply to nothing, so the index stays small.
        indexes = [
            models.Index(fields=["reply_to"], condition=Q(reply_to__isnull=False), name="message_reply_to"),
        ]

    def __str__(self) -> str:
        return f"{self.room_id}#{self.seq}"

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None


class Reaction(models.Model):
    """One user's one emoji on one message. Counts are computed from these rows, never stored."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="reactions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    # One fully-qualified emoji sequence (messaging.services.clean_emoji); the longest are ~10 code points.
    emoji = models.CharField(max_length=32)
    # Where the emoji sits among the message's reactions (order of first use):
    # every row of one emoji shares it, so it stays put while anyone keeps it.
    rank = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # Its index, led by message, also serves the per-page aggregation.
            models.UniqueConstraint(fields=["message", "emoji", "user"], name="reaction_message_emoji_user_unique"),
        ]
        indexes = [models.Index(fields=["user", "message"], name="reaction_user_message")]

    def __str__(self) -> str:
        return f"{self.emoji} on {self.message_id} by {self.user_id}"


class Mention(models.Model):
    """`@username` in a message, for a user who could read the room when it was written or edited.

    `room` and `seq` repeat the message's so that a user's mention count above
    their read marker is a range scan of (user, room, seq), never a count over
    the room's history. A deleted message loses its mentions (rows removed).
    """

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="mentions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="+")
    seq = models.BigIntegerField()
    # Order of first appearance in the body, from 0.
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        constraints = [
            # Led by message: also serves the one query per history page.
            models.UniqueConstraint(fields=["message", "user"], name="mention_message_user_unique"),
        ]
        indexes = [
            models.Index(fields=["user", "room", "seq"], name="mention_user_room_seq"),
            models.Index(fields=["user", "message"], name="mention_user_message"),
        ]

    def __str__(self) -> str:
        return f"@{self.user_id} in {self.message_id}"


def attachment_path(instance: "Attachment", filename: str) -> str:
    """Where an upload is stored: a random name, never the sender's.

    The sender's file name is kept (cleaned) in `Attachment.name` and only
    ever reaches a client in `Content-Disposition`, so no path or extension
    trick in it can touch the storage or change how a file is served.
    """
    return f"attachments/{instance.room_id}/{uuid.uuid4().hex}"


class Attachment(models.Model):
    """One uploaded file, first unused (`message` NULL), then part of exactly one message."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="attachments")
    uploader = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.CASCADE, related_name="attachments", db_index=False
    )
    # Order within the message, as the sender listed the ids.
    position = models.PositiveSmallIntegerField(default=0)
    file = models.FileField(upload_to=attachment_path, max_length=255)
    name = models.CharField(max_length=255)
    size = models.PositiveBigIntegerField()
    content_type = models.CharField(max_length=100)
    # True only for PNG, JPEG, GIF or WebP whose content Pillow verified:
    # only these are ever served inline.
    is_image = models.BooleanField(default=False)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            # One query per history page: led by message, in the sender's order.
            models.Index(fields=["message", "position"], name="attachment_message_position"),
            # The cleanup command's scan: only the unused ones.
            models.Index(fields=["created_at"], condition=Q(message__isnull=True), name="attachment_unused_created"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.pk})"


class Report(models.Model):
    """A reader's flag on a message, open until a moderator resolves it."""

    class Resolution(models.TextChoices):
        DISMISS = "dismiss", "Dismissed"
        DELETE = "delete", "Message deleted"

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="reports")
    # The message's room, repeated so a room's open queue is one index scan.
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="+")
    reporter = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    reason = models.CharField(max_length=500)
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolution = models.CharField(max_length=10, choices=Resolution.choices, blank=True)

    class Meta:
        constraints = [
            # One open report per reporter and message: a second report is 200, not a new row.
            models.UniqueConstraint(
                fields=["message", "reporter"], condition=Q(resolved_at__isnull=True), name="report_open_unique"
            ),
        ]
        indexes = [
            models.Index(fields=["room", "created_at"], condition=Q(resolved_at__isnull=True), name="report_room_open"),
        ]

    def __str__(self) -> str:
        return f"report {self.pk} on {self.message_id}"

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None

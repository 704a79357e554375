from django.conf import settings
from django.db import models
from django.db.models import Q

from rooms.models import Room


class Message(models.Model):
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    seq = models.BigIntegerField()
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="messages")
    body = models.TextField()
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

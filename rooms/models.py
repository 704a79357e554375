from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q

SLUG_RE = r"^[a-z0-9][a-z0-9-]{0,49}$"
slug_validator = RegexValidator(SLUG_RE, "Use 1-50 lowercase letters, digits or hyphens, not starting with a hyphen.")


def room_group_name(slug: str) -> str:
    """The one place room group names are made (consumers, services, admin).

    By slug (immutable, and valid in group names) so a socket can subscribe
    before it reads the room, and so miss nothing committed in between.
    """
    return f"room.{slug}"


class Room(models.Model):
    class Kind(models.TextChoices):
        ROOM = "room", "Room"
        DM = "dm", "Direct message"

    slug = models.CharField(max_length=50, unique=True, validators=[slug_validator])
    # Fixed at creation: a DM is made only by rooms.services.dm_open, never turned into a room.
    kind = models.CharField(max_length=4, choices=Kind.choices, default=Kind.ROOM, editable=False)
    # A DM's participants as their sorted ids ("3,8,21"). Unique, so the same set of
    # people always lands in one room even when two of them open it at once: the
    # second insert fails and dm_open returns the first one's room.
    dm_key = models.CharField(max_length=200, null=True, blank=True, unique=True, editable=False)
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True, max_length=2000)
    is_private = models.BooleanField(default=False)
    is_locked = models.BooleanField(default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # The seq of the newest message. Bumped under the row lock in the same
    # transaction as the insert, so seqs are gap-free and in commit order.
    last_seq = models.BigIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["slug"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind="dm", dm_key__isnull=False, is_private=True) | Q(kind="room", dm_key__isnull=True),
                name="room_dm_has_key_and_is_private",
            )
        ]

    def __str__(self) -> str:
        return self.slug

    @property
    def group_name(self) -> str:
        return room_group_name(self.slug)

    @property
    def is_dm(self) -> bool:
        return self.kind == self.Kind.DM

    @property
    def title(self) -> str:
        """The room's name as its viewer sees it.

        A DM has no name of its own: to each participant it is named after the
        others. `rooms_visible_to` prefetches them for its viewer as `dm_others`;
        without that (e.g. in `room_updated`, which every participant receives)
        the stored `name`, which lists everyone, stands in.
        """
        others = getattr(self, "dm_others", None)
        if self.is_dm and others:
            return ", ".join(sorted((m.user.get_display_name() for m in others), key=str.casefold))
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner"
        MODERATOR = "moderator"
        MEMBER = "member"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    joined_at = models.DateTimeField(auto_now_add=True)
    last_read_seq = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "room"], name="membership_user_room_unique")]
        indexes = [models.Index(fields=["room", "role"])]

    def __str__(self) -> str:
        return f"{self.user} in {self.room} ({self.role})"

    @property
    def can_moderate(self) -> bool:
        return self.role in (self.Role.OWNER, self.Role.MODERATOR)


class Ban(models.Model):
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="bans")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="room_bans")
    banned_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["room", "user"], name="ban_room_user_unique")]

    def __str__(self) -> str:
        return f"{self.user} banned from {self.room}"

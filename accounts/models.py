from django.contrib.auth.models import AbstractUser
from django.db import models
from django.db.models.functions import Lower


class User(AbstractUser):
    """A chat user. `display_name` is what other people see next to messages."""

    display_name = models.CharField(max_length=150, blank=True)

    class Meta(AbstractUser.Meta):
        # `@Bob` mentions bob: mentions resolve usernames case-insensitively.
        indexes = [models.Index(Lower("username"), name="user_username_lower")]

    def get_display_name(self) -> str:
        return self.display_name or self.username

    @property
    def group_name(self) -> str:
        """Channel-layer group that reaches every socket of this user, on any process."""
        return user_group_name(self.pk)


def user_group_name(user_id: int) -> str:
    return f"user.{user_id}"

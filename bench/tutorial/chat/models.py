from django.db import models


class Message(models.Model):
    """What the tutorial design stores: the room and the text, stamped on save."""

    room = models.CharField(max_length=100, db_index=True)
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"{self.room}: {self.body[:40]}"

"""Writes of messages. `message_create` is the one way a message comes to exist.

The websocket consumer, the REST API and the admin all call these. Each owns
its transaction; realtime events leave with `transaction.on_commit`, so no
socket ever hears of a row that could still roll back.
"""

from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import User
from common.errors import BadRequest, Forbidden, NotFound, RoomLocked, TooLong
from common.ratelimit import rate_limit_hit
from common.realtime import group_send_sync
from rooms.models import Ban, Membership, Room

from .models import Message
from .selectors import message_get_by_client_id
from .serializers import message_to_dict


def clean_body(body: Any) -> str:
    """Trim and check a message body: 1..CHAT_MAX_BODY code points after trimming."""
    if not isinstance(body, str):
        raise BadRequest("body must be a string.")
    body = body.strip()
    if not body:
        raise BadRequest("body must not be empty.")
    if len(body) > settings.CHAT_MAX_BODY:
        raise TooLong(f"body is limited to {settings.CHAT_MAX_BODY} characters (got {len(body)}).")
    return body


def clean_client_id(client_id: Any, *, required: bool = False) -> str | None:
    if client_id is None and not required:
        return None
    if not isinstance(client_id, str) or not 1 <= len(client_id) <= 64:
        raise BadRequest("client_id must be a string of 1-64 characters.")
    return client_id


def _broadcast(room: Room, event_type: str, message: Message) -> None:
    payload = message_to_dict(message, room_slug=room.slug)
    event = {"type": event_type, "room_id": room.pk, "seq": message.seq, "message": payload}
    group = room.group_name
    transaction.on_commit(lambda: group_send_sync(group, event))


def message_create(
    *, room: Room, author: User, body: Any, client_id: str | None = None, rate_limit: bool = True
) -> tuple[Message, bool]:
    """Persist a message and broadcast it to the room once committed.

    Returns `(message, created)`. A repeat of `(room, author, client_id)`
    returns the stored message with `created=False` and broadcasts nothing.
    The seq comes from the room row, bumped under its lock in the insert's
    transaction: gap-free and in commit order across any number of processes.

    Raises BadRequest/TooLong (input), NotFound (private room, not a member),
    Forbidden (banned), RoomLocked, RateLimited.
    """
    body = clean_body(body)
    client_id = clean_client_id(client_id)
    if client_id is not None:
        existing = message_get_by_client_id(room=room, author=author, client_id=client_id)
        if existing is not None:
            return existing, False
    if rate_limit:
        rate_limit_hit(user_id=author.pk)
    try:
        with transaction.atomic():
            locked = Room.objects.select_for_update().get(pk=room.pk)
            if client_id is not None:
                # Re-checked under the room lock: a racing retry that committed
                # first is visible now, so the pair yields one message.
                existing = message_get_by_client_id(room=room, author=author, client_id=client_id)
                if existing is not None:
                    return existing, False
            if Ban.objects.filter(room=locked, user=author).exists():
                raise Forbidden("You are banned from this room.")
            membership = Membership.objects.filter(room=locked, user=author).first()
            if membership is None:
                if locked.is_private:
                    raise NotFound("No such room.")
                membership = Membership(room=locked, user=author)
            if locked.is_locked:
                raise RoomLocked()
            seq = locked.last_seq + 1
            message = Message.objects.create(room=locked, seq=seq, author=author, body=body, client_id=client_id)
            Room.objects.filter(pk=locked.pk).update(last_seq=seq)
            # Sending marks the room read up to this message for its author.
            membership.last_read_seq = seq
            membership.save()
            locked.last_seq = seq
            _broadcast(locked, "chat.message", message)
    except IntegrityError:
        if client_id is None:
            raise
        existing = message_get_by_client_id(room=room, author=author, client_id=client_id)
        if existing is None:
            raise
        return existing, False
    message.room = locked
    return message, True


def message_edit(*, message: Message, actor: User, body: Any) -> Message:
    """The author alone edits; the room gets `message_updated` with the whole message."""
    body = clean_body(body)
    if message.author_id != actor.pk:
        raise Forbidden("Only the author can edit a message.")
    with transaction.atomic():
        current = Message.objects.select_for_update().select_related("author", "room").get(pk=message.pk)
        if current.deleted_at is not None:
            raise BadRequest("A deleted message cannot be edited.")
        if Ban.objects.filter(room_id=current.room_id, user=actor).exists():
            raise Forbidden("You are banned from this room.")
        if current.room.is_locked:
            raise RoomLocked()
        current.body = body
        current.edited_at = timezone.now()
        current.save(update_fields=["body", "edited_at"])
        _broadcast(current.room, "chat.message_updated", current)
    return current


def message_delete(*, message: Message, actor: User) -> Message:
    """Soft delete by the author, a room owner or moderator, or staff; broadcasts `message_deleted`.

    The message keeps its id and seq, so clients' sequences stay gap-free.
    Deleting twice is a no-op that returns the deleted message.
    """
    with transaction.atomic():
        current = Message.objects.select_for_update().select_related("author", "room").get(pk=message.pk)
        if current.author_id != actor.pk and not actor.is_staff:
            membership = Membership.objects.filter(room_id=current.room_id, user=actor).first()
            if membership is None or not membership.can_moderate:
                if current.room.is_private and membership is None:
                    raise NotFound("No such message.")
                raise Forbidden("Only the author or the room's moderators can delete this message.")
        if current.deleted_at is None:
            current.deleted_at = timezone.now()
            current.deleted_by = actor
            current.save(update_fields=["deleted_at", "deleted_by"])
            _broadcast(current.room, "chat.message_deleted", current)
    return current

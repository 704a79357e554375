"""Writes of messages. `message_create` is the one way a message comes to exist.

The websocket consumer, the REST API and the admin all call these. Each owns
its transaction; realtime events leave with `transaction.on_commit`, so no
socket ever hears of a row that could still roll back.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import User
from common.errors import BadRequest, ChatError, Forbidden, NotFound, RateLimited, RoomLocked, TooLong
from common.ratelimit import rate_limit_hit
from common.realtime import group_send_sync
from rooms.models import Ban, Membership, Room

from .models import Message
from .serializers import message_to_dict


def clean_body(body: Any) -> str:
    """Trim and check a message body: 1..CHAT_MAX_BODY code points after trimming."""
    if not isinstance(body, str):
        raise BadRequest("body must be a string.")
    body = body.strip()
    if not body:
        raise BadRequest("body must not be empty.")
    if "\x00" in body:
        # PostgreSQL text cannot hold NUL; refuse it as input, not as an outage.
        raise BadRequest("body must not contain NUL characters.")
    if len(body) > settings.CHAT_MAX_BODY:
        raise TooLong(f"body is limited to {settings.CHAT_MAX_BODY} characters (got {len(body)}).")
    return body


def clean_client_id(client_id: Any, *, required: bool = False) -> str | None:
    if client_id is None and not required:
        return None
    if not isinstance(client_id, str) or not 1 <= len(client_id) <= 64 or "\x00" in client_id:
        raise BadRequest("client_id must be a string of 1-64 characters.")
    return client_id


Publish = Callable[[list[tuple[str, dict[str, Any]]]], None]


def _publish_sync(events: list[tuple[str, dict[str, Any]]]) -> None:
    for group, event in events:
        group_send_sync(group, event)


def _message_event(room: Room, event_type: str, message: Message) -> tuple[str, dict[str, Any]]:
    payload = message_to_dict(message, room_slug=room.slug)
    return room.group_name, {"type": event_type, "room_id": room.pk, "seq": message.seq, "message": payload}


def _broadcast(room: Room, event_type: str, message: Message) -> None:
    events = [_message_event(room, event_type, message)]
    transaction.on_commit(lambda: _publish_sync(events))


@dataclass(frozen=True)
class NewMessage:
    """One request to post: what `messages_create` takes, many at a time."""

    room_id: int
    author: User
    body: Any
    client_id: str | None = None


@dataclass
class Posted:
    """The outcome of one NewMessage: the message (new or the original of a retry), or an error."""

    message: Message | None = None
    created: bool = False
    error: ChatError | None = None


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
    (posted,) = messages_create(
        requests=[NewMessage(room_id=room.pk, author=author, body=body, client_id=client_id)],
        rate_limit=rate_limit,
    )
    if posted.error is not None:
        raise posted.error
    assert posted.message is not None
    return posted.message, posted.created


def messages_create(
    *, requests: Sequence[NewMessage], rate_limit: bool = True, publish: Publish | None = None
) -> list[Posted]:
    """Post many messages in one transaction (group commit); one `Posted` per request, in order.

    This is `message_create` for a batch: the websocket's writer hands it all
    the sends that queued up while the previous batch committed, so a busy
    server pays one transaction, one lock per room and a handful of queries
    per batch instead of per message. Each request succeeds or fails on its
    own (bad body, locked room, ban, rate limit); no ack is given for a row
    that is not committed, because results are returned only after COMMIT.
    Broadcasts go out on commit, in seq order, through `publish` (default:
    a blocking group_send per message).
    """
    results = [Posted() for _ in requests]
    pending: list[tuple[int, NewMessage, str]] = []
    for i, req in enumerate(requests):
        try:
            body = clean_body(req.body)
            clean_client_id(req.client_id)
        except ChatError as exc:
            results[i].error = exc
            continue
        pending.append((i, req, body))
    if not pending:
        return results

    # Retries of committed messages are answered before the rate limit and
    # without a write lock.
    _answer_retries(pending, results)
    pending = [p for p in pending if results[p[0]].message is None]
    if rate_limit:
        allowed = []
        for i, req, body in pending:
            try:
                rate_limit_hit(user_id=req.author.pk)
            except RateLimited as exc:
                results[i].error = exc
                continue
            allowed.append((i, req, body))
        pending = allowed
    if not pending:
        return results
    try:
        _create_locked(pending, results, publish or _publish_sync)
    except IntegrityError:
        # Only a racing writer outside the room lock could cause this; fall
        # back to one transaction per request so each gets its own answer.
        if len(pending) == 1:
            raise
        for i, req, _body in pending:
            results[i] = messages_create(requests=[req], rate_limit=False, publish=publish)[0]
    return results


def _stored_by_key(pending: list[tuple[int, NewMessage, str]]) -> dict[tuple[int, int, str], Message]:
    """The stored messages for the requests' (room, author, client_id) keys, in one query."""
    wanted = Q()
    for _, req, _ in pending:
        if req.client_id is not None:
            wanted |= Q(room_id=req.room_id, author_id=req.author.pk, client_id=req.client_id)
    if not wanted:
        return {}
    return {
        (m.room_id, m.author_id, m.client_id): m  # type: ignore[misc]
        for m in Message.objects.select_related("author", "room").filter(wanted)
    }


def _answer_retries(pending: list[tuple[int, NewMessage, str]], results: list[Posted]) -> None:
    found = _stored_by_key(pending)
    for i, req, _ in pending:
        existing = found.get((req.room_id, req.author.pk, req.client_id)) if req.client_id else None
        if existing is not None:
            results[i].message, results[i].created = existing, False


def _refusal(
    room: Room | None,
    req: NewMessage,
    memberships: dict[tuple[int, int], Membership],
    banned: set[tuple[int, int]],
) -> ChatError | None:
    if room is None or (room.is_private and (req.room_id, req.author.pk) not in memberships):
        return NotFound("No such room.")
    if (req.room_id, req.author.pk) in banned:
        return Forbidden("You are banned from this room.")
    if room.is_locked:
        return RoomLocked()
    return None


def _create_locked(pending: list[tuple[int, NewMessage, str]], results: list[Posted], publish: Publish) -> None:
    room_ids = sorted({req.room_id for _, req, _ in pending})
    author_ids = {req.author.pk for _, req, _ in pending}
    with transaction.atomic():
        # Locked in id order, so two batches touching the same rooms cannot deadlock.
        rooms = {r.pk: r for r in Room.objects.select_for_update().filter(pk__in=room_ids).order_by("pk")}
        # Re-read under the lock: a racing retry that committed first is
        # visible now, so the pair yields one message.
        committed = _stored_by_key(pending)
        banned = set(Ban.objects.filter(room_id__in=room_ids, user_id__in=author_ids).values_list("room_id", "user_id"))
        memberships = {
            (m.room_id, m.user_id): m for m in Membership.objects.filter(room_id__in=room_ids, user_id__in=author_ids)
        }
        new_rows: list[tuple[int, Message]] = []
        in_batch: dict[tuple[int, int, str], Message] = {}
        read_to: dict[tuple[int, int], int] = {}
        for i, req, body in pending:
            room = rooms.get(req.room_id)
            key = (req.room_id, req.author.pk, req.client_id) if req.client_id else None
            if key is not None and key in committed:
                results[i].message = committed[key]
                continue
            if key is not None and key in in_batch:
                results[i].message = in_batch[key]  # the same retry twice in one batch
                continue
            error = _refusal(room, req, memberships, banned)
            if error is not None or room is None:
                results[i].error = error
                continue
            room.last_seq += 1
            message = Message(room=room, seq=room.last_seq, author=req.author, body=body, client_id=req.client_id)
            new_rows.append((i, message))
            if key is not None:
                in_batch[key] = message
            # Sending marks the room read up to this message for its author.
            read_to[(req.room_id, req.author.pk)] = room.last_seq
        if not new_rows:
            return
        Message.objects.bulk_create([m for _, m in new_rows])
        touched = {m.room_id for _, m in new_rows}
        for room_id in touched:
            Room.objects.filter(pk=room_id).update(last_seq=rooms[room_id].last_seq)
        to_update: list[Membership] = []
        to_create: list[Membership] = []
        for (room_id, user_id), seq in read_to.items():
            membership = memberships.get((room_id, user_id))
            if membership is None:
                # Posting in a public room makes the author a member.
                to_create.append(Membership(room_id=room_id, user_id=user_id, last_read_seq=seq))
            elif membership.last_read_seq < seq:
                membership.last_read_seq = seq
                to_update.append(membership)
        if to_create:
            Membership.objects.bulk_create(to_create, ignore_conflicts=True)
        if to_update:
            Membership.objects.bulk_update(to_update, ["last_read_seq"])
        for i, message in new_rows:
            results[i].message, results[i].created = message, True
        events = [_message_event(rooms[m.room_id], "chat.message", m) for _, m in new_rows]
        transaction.on_commit(lambda: publish(events))


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

"""Writes of messages. `message_create` is the one way a message comes to exist.

The websocket consumer, the REST API and the admin all call these. Each owns
its transaction; realtime events leave with `transaction.on_commit`, so no
socket ever hears of a row that could still roll back.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, NamedTuple

import emoji as emoji_lib
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connection, transaction
from django.db.backends.utils import CursorWrapper
from django.utils import timezone

from accounts.models import User, user_group_name
from accounts.serializers import user_to_dict
from audit.services import Action, audit_record, user_target
from common.errors import BadRequest, ChatError, Forbidden, NotFound, RateLimited, RoomLocked, TooLong
from common.ratelimit import parse_rate, rate_limit_hit
from common.realtime import group_send_sync
from rooms.models import Ban, Membership, Room, room_group_name
from rooms.selectors import room_check_moderator, room_check_readable

from .markdown import render_markdown
from .mentions import MentionedUser, choose_mentions, lookup_names
from .models import Mention, Message, Reaction, Report
from .selectors import reactions_for
from .serializers import attachment_dict, message_dict, message_to_dict, quote_dict


def clean_body(body: Any, *, allow_empty: bool = False) -> str:
    """Trim and check a message body: 1..CHAT_MAX_BODY code points after trimming.

    `allow_empty` (a message with attachments): "" and a missing (None) body pass as "".
    """
    if body is None and allow_empty:
        return ""
    if not isinstance(body, str):
        raise BadRequest("body must be a string.")
    body = body.strip()
    if not body:
        if allow_empty:
            return ""
        raise BadRequest("body must not be empty.")
    if "\x00" in body:
        # PostgreSQL text cannot hold NUL; refuse it as input, not as an outage.
        raise BadRequest("body must not contain NUL characters.")
    if len(body) > settings.CHAT_MAX_BODY:
        raise TooLong(f"body is limited to {settings.CHAT_MAX_BODY} characters (got {len(body)}).")
    return body


# The largest id the bigint columns hold; a larger one names no row.
_MAX_ID = 2**63 - 1


def clean_reply_to(reply_to: Any) -> int | None:
    """A reply's target id: null or a positive integer (whether it exists, and where, is checked later)."""
    if reply_to is None:
        return None
    if isinstance(reply_to, bool) or not isinstance(reply_to, int) or reply_to < 1:
        raise BadRequest("reply_to must be a message id or null.")
    if reply_to > _MAX_ID:
        # Beyond the id column: no such message. Looked up, it would be a
        # database error (an `unavailable` that no retry can cure).
        raise NotFound("No such message.")
    return reply_to


# At most this many files on one message (the contract's limit).
MAX_ATTACHMENTS = 10


def clean_attachments(value: Any) -> tuple[int, ...]:
    """`attachments` of a send: up to MAX_ATTACHMENTS distinct upload ids, in order (whose: checked later)."""
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise BadRequest("attachments must be a list of upload ids.")
    if len(value) > MAX_ATTACHMENTS:
        raise BadRequest(f"A message takes at most {MAX_ATTACHMENTS} attachments (got {len(value)}).")
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int) or not 1 <= item <= _MAX_ID:
            raise BadRequest("attachments must be a list of upload ids.")
    if len(set(value)) != len(value):
        raise BadRequest("attachments must not list an upload twice.")
    return tuple(value)


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
    # One payload for every viewer: counts are right, `me` is false (docs/protocol.md, "Reactions").
    reactions = reactions_for(message_ids=[message.pk], viewer_id=None).get(message.pk, [])
    payload = message_to_dict(message, room_slug=room.slug, reactions=reactions)
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
    # The id of a message in the same room, or None (clean_reply_to).
    reply_to: Any = None
    # Ids of the author's own unused uploads to this room (clean_attachments).
    attachments: Any = ()


@dataclass
class Posted:
    """The outcome of one NewMessage: the message (new, or the original of a retry), or an error.

    `data` is the message in `message_to_dict`'s shape, `client_id` included:
    pass it through `for_viewer` before showing it to anyone but the author.
    A new message's `data` is also the payload of its broadcast, so treat it
    as read-only.
    """

    data: dict[str, Any] | None = None
    created: bool = False
    error: ChatError | None = None

    @property
    def message_id(self) -> int | None:
        return None if self.data is None else int(self.data["id"])


def message_create(
    *,
    room: Room,
    author: User,
    body: Any,
    client_id: str | None = None,
    reply_to: Any = None,
    attachments: Any = None,
    rate_limit: bool = True,
) -> tuple[Message, bool]:
    """Persist a message and broadcast it to the room once committed.

    Returns `(message, created)`. A repeat of `(room, author, client_id)`
    returns the stored message with `created=False` and broadcasts nothing.
    The seq comes from the room row, bumped under its lock in the insert's
    transaction: gap-free and in commit order across any number of processes.

    Raises BadRequest/TooLong (input; `attachments` not all the author's
    own unused uploads to this room), NotFound (private room, not a member;
    `reply_to` not a message of this room), Forbidden (banned), RoomLocked,
    RateLimited.
    """
    request = NewMessage(
        room_id=room.pk,
        author=author,
        body=body,
        client_id=client_id,
        reply_to=reply_to,
        attachments=attachments if attachments is not None else (),
    )
    (posted,) = messages_create(requests=[request], rate_limit=rate_limit)
    if posted.error is not None:
        raise posted.error
    assert posted.data is not None
    if not posted.created:
        # The original may have been edited or deleted since: read it as it is now.
        return Message.objects.select_related("author", "room", "reply_to__author").get(pk=posted.data["id"]), False
    data = posted.data
    # Everything of a new row is known: no need to read it back.
    columns = {
        "id": data["id"],
        "room_id": room.pk,
        "seq": data["seq"],
        "author_id": author.pk,
        "body": data["body"],
        "html": data["html"],
        "client_id": data["client_id"],
        "created_at": datetime.fromisoformat(data["created_at"]),
        "reply_to_id": data["reply_to"]["id"] if data["reply_to"] else None,
    }
    fields = [field.attname for field in Message._meta.concrete_fields]
    message = Message.from_db(DEFAULT_DB_ALIAS, fields, [columns.get(name) for name in fields])
    message.room, message.author = room, author
    if message.reply_to_id is not None:
        message.reply_to = Message.objects.select_related("author").get(pk=message.reply_to_id)
    return message, True


# Larger batches are posted in slices this size, so that no statement outgrows
# a backend's limit on parameters (SQLite's default is 32766).
MAX_BATCH_ROWS = 1000


def messages_create(
    *, requests: Sequence[NewMessage], rate_limit: bool = True, publish: Publish | None = None
) -> list[Posted]:
    """Post many messages in one transaction (group commit); one `Posted` per request, in order.

    This is `message_create` for a batch: the websocket's writer hands it all
    the sends that queued up while the previous batch committed. A batch of
    any size up to MAX_BATCH_ROWS, across any rooms, costs the same few
    statements: lock the rooms, look up retries, read bans (and memberships
    of private rooms), one multi-row INSERT, one UPDATE of the rooms' seqs
    and one upsert of the authors' read markers. Each request succeeds or
    fails on its own (bad body, locked room, ban, rate limit); no ack is given
    for a row that is not committed, because results are returned only after
    COMMIT. Broadcasts go out on commit, in seq order, through `publish`
    (default: a blocking group_send per message).
    """
    if len(requests) > MAX_BATCH_ROWS:
        return [
            posted
            for start in range(0, len(requests), MAX_BATCH_ROWS)
            for posted in messages_create(
                requests=requests[start : start + MAX_BATCH_ROWS], rate_limit=rate_limit, publish=publish
            )
        ]
    results = [Posted() for _ in requests]
    pending: list[_Pending] = []
    for i, req in enumerate(requests):
        try:
            attachments = clean_attachments(req.attachments)
            # A message with files may have no text (a picture on its own).
            body = clean_body(req.body, allow_empty=bool(attachments))
            clean_client_id(req.client_id)
            if req.reply_to is not None or attachments != req.attachments:
                req = replace(req, reply_to=clean_reply_to(req.reply_to), attachments=attachments)
        except ChatError as exc:
            results[i].error = exc
            continue
        pending.append((i, req, body))
    if not pending:
        return results

    if rate_limit and parse_rate(settings.CHAT_RATE_LIMIT) is not None:
        # Retries of committed messages are answered before the rate limit, so
        # a client re-sending after a lost ack does not spend its budget. With
        # no limit the re-check under the lock alone answers them.
        with connection.cursor() as cursor:
            stored = _stored(cursor, pending)
        allowed = []
        for i, req, body in pending:
            original = stored.get((req.room_id, req.author.pk, req.client_id)) if req.client_id else None
            if original is not None:
                results[i].data = _stored_dict(original, req)
                continue
            try:
                rate_limit_hit(user_id=req.author.pk)
            except RateLimited as exc:
                results[i].error = exc
                continue
            allowed.append((i, req, body))
        pending = allowed
        if not pending:
            return results
    # Markdown is CPU work: done here, before any lock, for every body; a
    # message whose mentions turn out to name users renders again under the
    # lock (mention links need the users, which are read there).
    htmls = {i: render_markdown(body) for i, _req, body in pending}
    try:
        outcomes = _create_locked(pending, htmls, publish or _publish_sync)
    except IntegrityError:
        # Only a racing writer outside the room lock could cause this; fall
        # back to one transaction per request so each gets its own answer.
        if len(pending) == 1:
            raise
        for i, req, _body in pending:
            results[i] = messages_create(requests=[req], rate_limit=False, publish=publish)[0]
        return results
    for i, posted in outcomes.items():
        results[i] = posted
    return results


# The group-commit path below speaks SQL through one cursor: a fixed number of
# statements per batch whatever its size, no model instance, no queryset. It
# runs on PostgreSQL and on SQLite >= 3.35 (RETURNING, upsert, UPDATE FROM).
# Only placeholders and fixed names are formatted into the SQL (hence the
# S608 waivers); every value travels as a parameter.

_Pending = tuple[int, NewMessage, str]
_Key = tuple[int, int, str]


class _Stored(NamedTuple):
    id: int
    seq: int
    body: str
    html: str
    created_at: datetime
    edited_at: datetime | None
    deleted_at: datetime | None
    room_slug: str
    reply_to: dict[str, Any] | None
    attachments: list[dict[str, Any]]


class _LockedRoom(NamedTuple):
    slug: str
    is_private: bool
    is_locked: bool
    last_seq: int


def _in(column: str, values: list[int]) -> tuple[str, list[Any]]:
    """`column IN values` as SQL and its parameters."""
    if connection.vendor == "postgresql":
        return f"{column} = ANY(%s::bigint[])", [values]
    return f"{column} IN ({', '.join(['%s'] * len(values))})", values


def _rows(types: tuple[str, ...], rows: list[tuple[Any, ...]]) -> tuple[str, list[Any]]:
    """A table `v(column1, column2, ...)` of these rows (PostgreSQL types), as SQL and its parameters.

    PostgreSQL gets one array per column: a short SQL text of constant shape,
    which psycopg parses once and caches, where a VALUES list makes it parse
    rows x columns placeholders on every statement (7 ms for 200 messages).
    SQLite gets VALUES, whose columns it names column1, column2, ... too.
    """
    if connection.vendor == "postgresql":
        arrays = ", ".join(f"%s::{type_}[]" for type_ in types)
        names = ", ".join(f"column{n}" for n in range(1, len(types) + 1))
        return f"unnest({arrays}) AS v({names})", [list(column) for column in zip(*rows, strict=True)]
    row = f"({', '.join(['%s'] * len(types))})"
    return f"(VALUES {', '.join([row] * len(rows))}) AS v", [value for values in rows for value in values]


def _read_datetime() -> Callable[[Any], Any]:
    """Django's own conversion of a datetime column read raw (SQLite returns it naive)."""
    column = Message._meta.get_field("created_at").get_col(Message._meta.db_table)
    converters = connection.ops.get_db_converters(column)

    def read(value: Any) -> Any:
        for convert in converters:
            value = convert(value, column, connection)
        return value

    return read


def _stored(cursor: CursorWrapper, pending: list[_Pending]) -> dict[_Key, _Stored]:
    """The stored messages for the requests' (room, author, client_id) keys, in one statement.

    Their attachments take one more, only when a retry found its original.
    """
    keys = list(dict.fromkeys((req.room_id, req.author.pk, req.client_id) for _, req, _ in pending if req.client_id))
    if not keys:
        return {}
    rows, params = _rows(("bigint", "bigint", "text"), keys)
    # `client_id IS NOT NULL` lets PostgreSQL use the partial idempotency index.
    # The reply's original joins in (LEFT: most messages reply to nothing), so
    # a retry's answer quotes it as it is now, in the same one statement.
    cursor.execute(
        "SELECT m.room_id, m.author_id, m.client_id, m.id, m.seq, m.body, m.html, m.created_at, m.edited_at,"  # noqa: S608
        f" m.deleted_at, r.slug, {_QUOTE_COLUMNS} FROM {rows} JOIN messaging_message m ON m.room_id = v.column1"
        " AND m.author_id = v.column2 AND m.client_id = v.column3 AND m.client_id IS NOT NULL"
        " JOIN rooms_room r ON r.id = m.room_id"
        " LEFT JOIN messaging_message q ON q.id = m.reply_to_id LEFT JOIN accounts_user qa ON qa.id = q.author_id",
        params,
    )
    found = cursor.fetchall()
    if not found:
        return {}
    read = _read_datetime()
    files = _attachments_of(cursor, sorted({row[3] for row in found}))
    return {
        (room_id, author_id, client_id): _Stored(
            id_,
            seq,
            body,
            html,
            read(created),
            read(edited),
            read(deleted),
            slug,
            _quote(quote, read),
            files.get(id_, []),
        )
        for room_id, author_id, client_id, id_, seq, body, html, created, edited, deleted, slug, *quote in found
    }


# A reply's original and its author, as `q` and `qa`.
_QUOTE_COLUMNS = "q.id, q.room_id, q.seq, q.body, q.deleted_at, qa.id, qa.username, qa.display_name"


def _quote(columns: Sequence[Any], read: Callable[[Any], Any]) -> dict[str, Any] | None:
    """`reply_to` from _QUOTE_COLUMNS (None when the LEFT JOIN found nothing)."""
    id_, _room_id, seq, body, deleted, author_id, username, display_name = columns
    if id_ is None:
        return None
    author = {"id": author_id, "username": username, "display_name": display_name or username}
    return quote_dict(id=id_, seq=seq, author=author, body=body, deleted_at=read(deleted))


def _quotes(cursor: CursorWrapper, ids: list[int]) -> dict[int, tuple[int, dict[str, Any]]]:
    """The batch's reply targets in one statement: id -> (room_id, `reply_to`)."""
    where, params = _in("q.id", ids)
    cursor.execute(
        f"SELECT {_QUOTE_COLUMNS} FROM messaging_message q JOIN accounts_user qa ON qa.id = q.author_id"  # noqa: S608
        f" WHERE {where}",
        params,
    )
    read = _read_datetime()
    quotes: dict[int, tuple[int, dict[str, Any]]] = {}
    for row in cursor.fetchall():
        quote = _quote(row, read)
        assert quote is not None
        quotes[row[0]] = (row[1], quote)
    return quotes


def _attachments_of(cursor: CursorWrapper, message_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """`attachments` of stored messages, in their order, in one statement."""
    where, params = _in("message_id", message_ids)
    cursor.execute(
        "SELECT message_id, id, name, size, content_type FROM messaging_attachment"  # noqa: S608
        f" WHERE {where} ORDER BY message_id, position",
        params,
    )
    files: dict[int, list[dict[str, Any]]] = {}
    for message_id, id_, name, size, content_type in cursor.fetchall():
        files.setdefault(message_id, []).append(
            attachment_dict(id=id_, name=name, size=size, content_type=content_type)
        )
    return files


class _Upload(NamedTuple):
    room_id: int
    uploader_id: int
    message_id: int | None
    file: dict[str, Any]


def _lock_uploads(cursor: CursorWrapper, upload_ids: list[int]) -> dict[int, _Upload]:
    """The batch's listed uploads, locked (in id order) until COMMIT, in one statement.

    The lock is what makes attaching race-safe: of two sends listing the same
    upload, the second reads it only after the first committed, and then
    sees it used. The cleanup command locks the rows it deletes the same way.
    """
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    where, params = _in("id", upload_ids)
    cursor.execute(
        "SELECT id, room_id, uploader_id, message_id, name, size, content_type"  # noqa: S608
        f" FROM messaging_attachment WHERE {where} ORDER BY id{lock}",
        params,
    )
    return {
        id_: _Upload(room_id, uploader_id, message_id, attachment_dict(id=id_, name=name, size=size, content_type=ct))
        for id_, room_id, uploader_id, message_id, name, size, ct in cursor.fetchall()
    }


def _uploads_refusal(req: NewMessage, uploads: dict[int, _Upload], claimed: set[int]) -> ChatError | None:
    """bad_request unless each listed upload is the author's own, to this room, unused, not taken earlier in a batch."""
    for upload_id in req.attachments:
        upload = uploads.get(upload_id)
        if (
            upload is None
            or upload.message_id is not None
            or upload.uploader_id != req.author.pk
            or upload.room_id != req.room_id
            or upload_id in claimed
        ):
            return BadRequest(f"Attachment {upload_id} is not an unused upload of yours to this room.")
    return None


def _attach(cursor: CursorWrapper, rows: list[tuple[int, int, int, int, int]]) -> None:
    """(upload_id, message_id, position, uploader_id, room_id): attach them all in one UPDATE.

    The WHERE repeats every condition checked under the lock, and the row
    count must match: an upload that changed hands anyway fails the whole
    batch (IntegrityError), which messages_create then retries one by one.
    """
    values, params = _rows(("bigint", "bigint", "smallint", "bigint", "bigint"), rows)
    cursor.execute(
        f"UPDATE messaging_attachment SET message_id = v.column2, position = v.column3 FROM {values}"  # noqa: S608
        " WHERE messaging_attachment.id = v.column1 AND messaging_attachment.message_id IS NULL"
        " AND messaging_attachment.uploader_id = v.column4 AND messaging_attachment.room_id = v.column5",
        params,
    )
    if cursor.rowcount != len(rows):
        raise IntegrityError(f"attached {cursor.rowcount} of {len(rows)} uploads: one was taken or removed meanwhile")


def _stored_dict(stored: _Stored, req: NewMessage) -> dict[str, Any]:
    return message_dict(
        id=stored.id,
        room_slug=stored.room_slug,
        seq=stored.seq,
        author=req.author,
        body=stored.body,
        html=stored.html,
        client_id=req.client_id,
        created_at=stored.created_at,
        edited_at=stored.edited_at,
        deleted_at=stored.deleted_at,
        reply_to=stored.reply_to,
        attachments=stored.attachments,
    )


def _lock_rooms(cursor: CursorWrapper, room_ids: list[int]) -> dict[int, _LockedRoom]:
    # In id order, so two batches touching the same rooms cannot deadlock.
    # SQLite has no FOR UPDATE: its one writer at a time serializes instead.
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    where, params = _in("id", room_ids)
    cursor.execute(
        f"SELECT id, slug, is_private, is_locked, last_seq FROM rooms_room WHERE {where} ORDER BY id{lock}",  # noqa: S608
        params,
    )
    return {
        id_: _LockedRoom(slug, bool(private), bool(locked), last_seq)
        for id_, slug, private, locked, last_seq in cursor.fetchall()
    }


def _pairs(cursor: CursorWrapper, table: str, room_ids: list[int], user_ids: list[int]) -> set[tuple[int, int]]:
    """(room_id, user_id) rows of a ban or membership table for these rooms and users."""
    in_rooms, room_params = _in("room_id", room_ids)
    in_users, user_params = _in("user_id", user_ids)
    cursor.execute(
        f"SELECT room_id, user_id FROM {table} WHERE {in_rooms} AND {in_users}",  # noqa: S608
        [*room_params, *user_params],
    )
    return {(room_id, user_id) for room_id, user_id in cursor.fetchall()}


def _refusal(
    room: _LockedRoom | None, req: NewMessage, members: set[tuple[int, int]], banned: set[tuple[int, int]]
) -> ChatError | None:
    if room is None or (room.is_private and (req.room_id, req.author.pk) not in members):
        return NotFound("No such room.")
    if (req.room_id, req.author.pk) in banned:
        return Forbidden("You are banned from this room.")
    if room.is_locked:
        return RoomLocked()
    return None


def _create_locked(pending: list[_Pending], htmls: dict[int, str], publish: Publish) -> dict[int, Posted]:
    """The batch under its rooms' locks; `htmls` are the bodies rendered without mention links, by request index."""
    room_ids = sorted({req.room_id for _, req, _ in pending})
    author_ids = sorted({req.author.pk for _, req, _ in pending})
    # One timestamp for the batch, so the dicts need not read the rows back.
    now = timezone.now()
    outcomes: dict[int, Posted] = {}
    with transaction.atomic(), connection.cursor() as cursor:
        rooms = _lock_rooms(cursor, room_ids)
        # Re-read under the lock: a racing retry that committed first is
        # visible now, so the pair yields one message.
        committed = _stored(cursor, pending)
        banned = _pairs(cursor, "rooms_ban", room_ids, author_ids)
        private_ids = [room_id for room_id, room in rooms.items() if room.is_private]
        members = _pairs(cursor, "rooms_membership", private_ids, author_ids) if private_ids else set()
        last_seq = {room_id: room.last_seq for room_id, room in rooms.items()}
        # Every reply target of the batch in one statement (none when nobody replies).
        reply_ids = sorted({req.reply_to for _, req, _ in pending if req.reply_to is not None})
        quotes = _quotes(cursor, reply_ids) if reply_ids else {}
        # Every listed upload of the batch, locked, in one statement (none when nobody attaches).
        upload_ids = sorted({upload_id for _, req, _ in pending for upload_id in req.attachments})
        uploads = _lock_uploads(cursor, upload_ids) if upload_ids else {}
        claimed: set[int] = set()
        new_rows: list[tuple[int, NewMessage, str, int]] = []
        first_of: dict[_Key, int] = {}
        repeats: list[tuple[int, int]] = []
        read_to: dict[tuple[int, int], int] = {}
        for i, req, body in pending:
            key = (req.room_id, req.author.pk, req.client_id) if req.client_id else None
            if key is not None and key in committed:
                outcomes[i] = Posted(data=_stored_dict(committed[key], req))
                continue
            if key is not None and key in first_of:
                repeats.append((i, first_of[key]))  # the same retry twice in one batch
                continue
            room = rooms.get(req.room_id)
            error = _refusal(room, req, members, banned)
            if error is None and req.reply_to is not None:
                target = quotes.get(req.reply_to)
                if target is None or target[0] != req.room_id:
                    # Another room's message is as unknown as a missing one.
                    error = NotFound("No such message to reply to in this room.")
            if error is None and req.attachments:
                error = _uploads_refusal(req, uploads, claimed)
            if error is not None:
                outcomes[i] = Posted(error=error)
                continue
            claimed.update(req.attachments)
            seq = last_seq[req.room_id] = last_seq[req.room_id] + 1
            new_rows.append((i, req, body, seq))
            if key is not None:
                first_of[key] = i
            # Sending marks the room read up to this message for its author.
            read_to[(req.room_id, req.author.pk)] = seq
        if not new_rows:
            return outcomes
        readable = _resolve_mentions(
            cursor, {(req.room_id, name) for _, req, body, _ in new_rows for name in lookup_names(body)}
        )
        mentioned = {
            i: _mentions_in(body, room_id=req.room_id, author_id=req.author.pk, readable=readable)
            for i, req, body, _ in new_rows
        }
        for i, _req, body, _seq in new_rows:
            if mentioned[i]:
                htmls[i] = render_markdown(body, [user.username for user in mentioned[i]])
        ids = _insert_messages(cursor, new_rows, htmls, now)
        _insert_mentions(
            cursor,
            [
                (ids[(req.room_id, seq)], user.id, req.room_id, seq, position)
                for i, req, _, seq in new_rows
                for position, user in enumerate(mentioned[i])
            ],
        )
        if claimed:
            _attach(
                cursor,
                [
                    (upload_id, ids[(req.room_id, seq)], position, req.author.pk, req.room_id)
                    for _, req, _, seq in new_rows
                    for position, upload_id in enumerate(req.attachments)
                ],
            )
        _set_last_seqs(cursor, {room_id: last_seq[room_id] for room_id, _ in read_to})
        _mark_read(cursor, read_to, now)
        events = []
        mention_events = []
        for i, req, body, seq in new_rows:
            slug = rooms[req.room_id].slug
            data = message_dict(
                id=ids[(req.room_id, seq)],
                room_slug=slug,
                seq=seq,
                author=req.author,
                body=body,
                html=htmls[i],
                client_id=req.client_id,
                created_at=now,
                reply_to=quotes[req.reply_to][1] if req.reply_to is not None else None,
                mentions=[user.to_dict() for user in mentioned[i]],
                attachments=[uploads[upload_id].file for upload_id in req.attachments],
            )
            outcomes[i] = Posted(data=data, created=True)
            events.append(
                (room_group_name(slug), {"type": "chat.message", "room_id": req.room_id, "seq": seq, "message": data})
            )
            mention_events += _mention_events(slug, data, [user.id for user in mentioned[i]])
        for i, first in repeats:
            outcomes[i] = Posted(data=outcomes[first].data)
        # Each message's broadcast first, then the mentioned users' notices.
        events += mention_events
        transaction.on_commit(lambda: publish(events))
    return outcomes


def _insert_messages(
    cursor: CursorWrapper, new_rows: list[tuple[int, NewMessage, str, int]], htmls: dict[int, str], now: datetime
) -> dict[tuple[int, int], int]:
    """One multi-row INSERT; the new ids by (room_id, seq), since RETURNING promises no order.

    `html` goes in as computed (`htmls`, by request index); it need not come
    back in RETURNING, the caller already holds it.
    """
    rows, params = _rows(
        ("bigint", "bigint", "bigint", "text", "text", "text", "bigint"),
        [
            (req.room_id, seq, req.author.pk, body, htmls[i], req.client_id, req.reply_to)
            for i, req, body, seq in new_rows
        ],
    )
    cursor.execute(
        "INSERT INTO messaging_message (room_id, seq, author_id, body, html, client_id, reply_to_id, created_at)"  # noqa: S608
        f" SELECT v.column1, v.column2, v.column3, v.column4, v.column5, v.column6, v.column7, %s FROM {rows}"
        " RETURNING room_id, seq, id",
        [connection.ops.adapt_datetimefield_value(now), *params],
    )
    return {(room_id, seq): id_ for room_id, seq, id_ in cursor.fetchall()}


def _resolve_mentions(
    cursor: CursorWrapper, wanted: set[tuple[int, str]]
) -> dict[tuple[int, str], list[MentionedUser]]:
    """Active users who can read the room, by lower-cased username, for (room_id, name) pairs: one statement.

    Readable: a public room they are not banned from, or a private one (a DM
    included) they are a member of and not banned from. No names, no statement.
    """
    if not wanted:
        return {}
    rows, params = _rows(("bigint", "text"), sorted(wanted))
    cursor.execute(
        "SELECT v.column1, v.column2, u.id, u.username, u.display_name"  # noqa: S608
        f" FROM {rows} JOIN accounts_user u ON lower(u.username) = v.column2 AND u.is_active"
        " JOIN rooms_room r ON r.id = v.column1"
        " WHERE (NOT r.is_private OR EXISTS ("
        "  SELECT 1 FROM rooms_membership m WHERE m.user_id = u.id AND m.room_id = r.id))"
        " AND NOT EXISTS (SELECT 1 FROM rooms_ban b WHERE b.user_id = u.id AND b.room_id = r.id)",
        params,
    )
    found: dict[tuple[int, str], list[MentionedUser]] = {}
    for room_id, name, id_, username, display_name in cursor.fetchall():
        found.setdefault((room_id, name), []).append(MentionedUser(id_, username, display_name))
    return found


def _mentions_in(
    body: str, *, room_id: int, author_id: int, readable: dict[tuple[int, str], list[MentionedUser]]
) -> list[MentionedUser]:
    by_name = {name: users for (rid, name), users in readable.items() if rid == room_id}
    return choose_mentions(body, author_id=author_id, users_by_name=by_name)


def _insert_mentions(cursor: CursorWrapper, mentions: list[tuple[int, int, int, int, int]]) -> None:
    """(message_id, user_id, room_id, seq, position) rows in one INSERT; none, no statement."""
    if not mentions:
        return
    rows, params = _rows(("bigint", "bigint", "bigint", "bigint", "smallint"), mentions)
    cursor.execute(
        "INSERT INTO messaging_mention (message_id, user_id, room_id, seq, position)"  # noqa: S608
        f" SELECT v.column1, v.column2, v.column3, v.column4, v.column5 FROM {rows}",
        params,
    )


def _mention_events(slug: str, data: dict[str, Any], user_ids: list[int]) -> list[tuple[str, dict[str, Any]]]:
    """`mention` to every socket of each user, through their user group (on any process)."""
    return [
        (user_group_name(user_id), {"type": "user.mention", "user_id": user_id, "room": slug, "message": data})
        for user_id in user_ids
    ]


def mentions_set(*, message: Message) -> tuple[list[MentionedUser], list[int]]:
    """Parse the body again and make the message's Mention rows match.

    Returns the users the body mentions now (in order) and the ids of those
    it newly mentions.

    For an edit, inside its transaction: a name the edit adds mentions (and
    notifies) its user, a name it removes no longer mentions anyone, and those
    mentioned before and after keep their mention without a second notice.
    """
    with connection.cursor() as cursor:
        readable = _resolve_mentions(cursor, {(message.room_id, name) for name in lookup_names(message.body)})
    users = _mentions_in(message.body, room_id=message.room_id, author_id=message.author_id, readable=readable)
    before = set(Mention.objects.filter(message=message).values_list("user_id", flat=True))
    Mention.objects.filter(message=message).exclude(user_id__in=[user.id for user in users]).delete()
    for position, user in enumerate(users):
        Mention.objects.update_or_create(
            message=message,
            user_id=user.id,
            defaults={"room_id": message.room_id, "seq": message.seq, "position": position},
        )
    return users, [user.id for user in users if user.id not in before]


def _set_last_seqs(cursor: CursorWrapper, last_seqs: dict[int, int]) -> None:
    rows, params = _rows(("bigint", "bigint"), list(last_seqs.items()))
    cursor.execute(
        f"UPDATE rooms_room SET last_seq = v.column2 FROM {rows} WHERE rooms_room.id = v.column1",  # noqa: S608
        params,
    )


def _mark_read(cursor: CursorWrapper, read_to: dict[tuple[int, int], int], now: datetime) -> None:
    """Move the authors' read markers up to their messages, joining public rooms, in one upsert.

    Rows are inserted only where the author may still be a member: a public
    room, or a private one whose membership is still there, and never under a
    ban. So a leave or ban committed while the batch ran is not undone.
    """
    rows, params = _rows(
        ("bigint", "bigint", "bigint"), [(user_id, room_id, seq) for (room_id, user_id), seq in read_to.items()]
    )
    greatest = "GREATEST" if connection.vendor == "postgresql" else "MAX"
    cursor.execute(
        "INSERT INTO rooms_membership (user_id, room_id, role, joined_at, last_read_seq)"  # noqa: S608
        f" SELECT v.column1, v.column2, %s, %s, v.column3 FROM {rows}"
        " JOIN rooms_room r ON r.id = v.column2"
        " WHERE (NOT r.is_private OR EXISTS ("
        "  SELECT 1 FROM rooms_membership m WHERE m.user_id = v.column1 AND m.room_id = v.column2))"
        " AND NOT EXISTS (SELECT 1 FROM rooms_ban b WHERE b.user_id = v.column1 AND b.room_id = v.column2)"
        " ON CONFLICT (user_id, room_id) DO UPDATE"
        f" SET last_read_seq = {greatest}(rooms_membership.last_read_seq, EXCLUDED.last_read_seq)",
        [Membership.Role.MEMBER.value, connection.ops.adapt_datetimefield_value(now), *params],
    )


def _lock_message(message_id: int) -> Message:
    """The message with its room and author rows locked until COMMIT, in one statement.

    Every write to a message takes exactly these locks first (and a report's
    resolution takes them before the report's), so writers of one message
    queue in the same order and never deadlock.
    """
    return (
        Message.objects.select_for_update(of=("self", "room", "author"))
        .select_related("author", "room", "reply_to__author")
        .get(pk=message_id)
    )


def _check_moderates_message(*, message: Message, actor: User, refusal: str) -> None:
    """Staff, or the room's owner or a moderator: else NotFound (private room, not a member) or Forbidden(refusal)."""
    if actor.is_staff:
        return
    membership = Membership.objects.filter(room_id=message.room_id, user=actor).first()
    if membership is None or not membership.can_moderate:
        if message.room.is_private and membership is None:
            raise NotFound("No such message.")
        raise Forbidden(refusal)


def _audit_message(*, actor: User, action: str, message: Message) -> None:
    audit_record(
        actor=actor,
        action=action,
        target=message_target(message),
        room_id=message.room_id,
        target_user_id=message.author_id,
        message_id=message.pk,
    )


def message_edit(*, message: Message, actor: User, body: Any) -> Message:
    """The author alone edits; the room gets `message_updated` with the whole message."""
    body = clean_body(body)
    if message.author_id != actor.pk:
        raise Forbidden("Only the author can edit a message.")
    with transaction.atomic():
        current = _lock_message(message.pk)
        if current.deleted_at is not None:
            raise BadRequest("A deleted message cannot be edited.")
        if Ban.objects.filter(room_id=current.room_id, user=actor).exists():
            raise Forbidden("You are banned from this room.")
        if current.room.is_locked:
            raise RoomLocked()
        current.body = body
        current.edited_at = timezone.now()
        # Parsed again: names the edit adds notify their users, removed ones stop mentioning.
        users, added = mentions_set(message=current)
        # Rendered again, with links for the mentions as they are now.
        current.html = render_markdown(body, [user.username for user in users])
        current.save(update_fields=["body", "html", "edited_at"])
        group, event = _message_event(current.room, "chat.message_updated", current)
        events = [(group, event), *_mention_events(current.room.slug, event["message"], added)]
        transaction.on_commit(lambda: _publish_sync(events))
    return current


def message_delete(*, message: Message, actor: User) -> Message:
    """Soft delete by the author, a room owner or moderator, or staff; broadcasts `message_deleted`.

    The message keeps its id and seq, so clients' sequences stay gap-free.
    Deleting twice is a no-op that returns the deleted message.
    """
    with transaction.atomic():
        current = _lock_message(message.pk)
        if current.author_id != actor.pk:
            refusal = "Only the author or the room's moderators can delete this message."
            _check_moderates_message(message=current, actor=actor, refusal=refusal)
        if current.deleted_at is None:
            current.deleted_at = timezone.now()
            current.deleted_by = actor
            # Nothing of the body is kept where a client could read it.
            current.html = ""
            current.save(update_fields=["deleted_at", "deleted_by", "html"])
            # A deleted message mentions nobody: out of mention counts and lists.
            Mention.objects.filter(message=current).delete()
            _broadcast(current.room, "chat.message_deleted", current)
            if current.author_id != actor.pk:
                # A moderator's delete settles what was reported about it. The
                # author's own delete does not: moderators may still act on why.
                _close_reports(message=current, actor=actor, now=current.deleted_at)
                _audit_message(actor=actor, action=Action.MESSAGE_DELETED, message=current)
    return current


def message_target(message: Message) -> str:
    """How a message is named in the audit trail: "message #12 (seq 3) by @bob"."""
    return f"message #{message.pk} (seq {message.seq}) by {user_target(message.author)}"


def message_restore(*, message: Message, actor: User) -> Message:
    """Undo a soft delete (staff in the admin, or the room's owner or a moderator); broadcasts `message_updated`.

    The body was kept, so the message comes back as it was: rendered again,
    its mentions back (without a second notice). Restoring a message that is
    not deleted is a no-op. Audited unless the author restores their own.
    """
    with transaction.atomic():
        current = _lock_message(message.pk)
        _check_moderates_message(
            message=current, actor=actor, refusal="Only the room's moderators or staff can restore a message."
        )
        if current.deleted_at is None:
            return current
        current.deleted_at = None
        current.deleted_by = None
        users, _added = mentions_set(message=current)
        current.html = render_markdown(current.body, [user.username for user in users])
        current.save(update_fields=["deleted_at", "deleted_by", "html"])
        _broadcast(current.room, "chat.message_updated", current)
        if current.author_id != actor.pk:
            _audit_message(actor=actor, action=Action.MESSAGE_RESTORED, message=current)
    return current


# --- reactions -------------------------------------------------------------------

MAX_REACTIONS = 20  # distinct emoji per message


def clean_emoji(value: Any) -> str:
    """Exactly one fully-qualified Unicode emoji sequence (Unicode's emoji data, via the `emoji` package).

    "👍", "👍🏽", "❤️", "👨‍👩‍👧" and "🇫🇷" pass; "a", ":)", "👍👍", an
    unqualified "❤" (no VS16) or a lone skin-tone modifier do not.
    """
    if not isinstance(value, str) or not value or len(value) > 32:
        raise BadRequest("emoji must be one emoji.")
    data = emoji_lib.EMOJI_DATA.get(value)
    if data is None or data.get("status") != emoji_lib.STATUS["fully_qualified"] or not emoji_lib.is_emoji(value):
        raise BadRequest("emoji must be one fully-qualified Unicode emoji.")
    return value


def reaction_set(*, user: User, message_id: int, emoji: Any, on: Any, room_id: int | None = None) -> Message:
    """Add (`on`) or remove the user's `emoji` on a message; broadcasts `reaction` when something changed.

    Adding twice counts once and removing what is not there is a no-op (no
    event). Anyone who can read the room and is not banned may react; a
    locked room refuses (RoomLocked), a deleted message takes no new ones.
    `room_id`, when given (the websocket's `room`), must be the message's room.

    The message row is locked (FOR NO KEY UPDATE, which does not block
    replies' inserts), so toggles of one message from any number of processes
    take turns: the 20-emoji limit holds and each event's `count`, read from
    the Reaction rows, is exact as of its commit.
    """
    emoji = clean_emoji(emoji)
    if not isinstance(on, bool):
        raise BadRequest("on must be true or false.")
    with transaction.atomic():
        message = (
            Message.objects.select_for_update(no_key=True, of=("self",))
            .select_related("room")
            .filter(pk=message_id)
            .first()
        )
        if message is None or (room_id is not None and message.room_id != room_id):
            raise NotFound("No such message.")
        room = message.room
        try:
            room_check_readable(room=room, user=user)
        except NotFound:
            raise NotFound("No such message.") from None
        if room.is_locked:
            raise RoomLocked()
        if on:
            if message.deleted_at is not None:
                raise BadRequest("A deleted message takes no reactions.")
            if Reaction.objects.filter(message=message, user=user, emoji=emoji).exists():
                return message
            used = dict(Reaction.objects.filter(message=message).values_list("emoji", "rank").distinct())
            if emoji not in used and len(used) >= MAX_REACTIONS:
                raise BadRequest(f"A message takes at most {MAX_REACTIONS} different emoji.")
            rank = used[emoji] if emoji in used else max(used.values(), default=0) + 1
            Reaction.objects.create(message=message, user=user, emoji=emoji, rank=rank)
        elif not Reaction.objects.filter(message=message, user=user, emoji=emoji).delete()[0]:
            return message
        count = Reaction.objects.filter(message=message, emoji=emoji).count()
        event = {
            "type": "chat.reaction",
            "room": room.slug,
            "message_id": message.pk,
            "emoji": emoji,
            "user": user_to_dict(user),
            "on": on,
            "count": count,
        }
        transaction.on_commit(lambda: group_send_sync(room.group_name, event))
    return message


# --- reports ---------------------------------------------------------------------

REPORT_REASON_MAX = 500


def clean_reason(reason: Any) -> str:
    """A report's reason: 1..REPORT_REASON_MAX code points after trimming."""
    if not isinstance(reason, str):
        raise BadRequest("reason must be a string.")
    reason = reason.strip()
    if not reason:
        raise BadRequest("reason must not be empty.")
    if "\x00" in reason:
        raise BadRequest("reason must not contain NUL characters.")
    if len(reason) > REPORT_REASON_MAX:
        raise BadRequest(f"reason is limited to {REPORT_REASON_MAX} characters (got {len(reason)}).")
    return reason


def report_create(*, message_id: int, reporter: User, reason: Any) -> tuple[Report, bool]:
    """Report a message to the room's moderators; returns (report, created).

    Anyone who can read the room may report (NotFound otherwise, as for
    reading the message; Forbidden when banned). A user's second report of a
    message they already have an open report on returns that report
    (created=False, reason unchanged), also when two arrive at once: the
    partial unique constraint lets one insert win. A deleted message cannot be
    reported (BadRequest): there is nothing left to moderate.
    """
    reason = clean_reason(reason)
    message = Message.objects.select_related("room").filter(pk=message_id).first()
    if message is None:
        raise NotFound("No such message.")
    try:
        room_check_readable(room=message.room, user=reporter)
    except NotFound:
        raise NotFound("No such message.") from None
    if message.deleted_at is not None:
        raise BadRequest("This message is deleted; there is nothing left to report.")
    open_reports = Report.objects.filter(message=message, reporter=reporter, resolved_at__isnull=True)
    existing = open_reports.first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            report = Report.objects.create(message=message, room=message.room, reporter=reporter, reason=reason)
    except IntegrityError:
        existing = open_reports.first()
        if existing is None:
            raise
        return existing, False
    return report, True


def _close_reports(*, message: Message, actor: User, now: datetime | None) -> int:
    """Close every open report on the message as `delete`: the message is gone."""
    return Report.objects.filter(message=message, resolved_at__isnull=True).update(
        resolved_at=now or timezone.now(), resolved_by=actor, resolution=Report.Resolution.DELETE
    )


def report_resolve(*, report_id: int, actor: User, action: Any, room: Room | None = None) -> Report:
    """Close an open report: `dismiss` it, or `delete` the message (live: `message_deleted`).

    The room's owner or a moderator, or staff. `delete` goes through
    `message_delete` and also closes the other open reports on that message;
    `dismiss` closes this report only. A report that is not open (resolved
    already, perhaps by another moderator a moment ago), or not in `room`
    when given, is NotFound. Audited (`report_resolved`), and a `delete` adds
    the message's own `message_deleted` entry.
    """
    if action not in Report.Resolution.values:
        raise BadRequest("action must be 'dismiss' or 'delete'.")
    with transaction.atomic():
        report = Report.objects.select_related("message__author", "room").filter(pk=report_id).first()
        if report is None or (room is not None and report.room_id != room.pk):
            raise NotFound("No such report.")
        if not actor.is_staff:
            room_check_moderator(room=report.room, user=actor)
        # The message first, and only then its reports, as message_delete
        # does: two moderators acting on one reported message queue instead
        # of deadlocking.
        _lock_message(report.message_id)
        now = timezone.now()
        # Claimed by a conditional UPDATE, so of two moderators resolving at
        # once exactly one succeeds, on any database.
        claimed = Report.objects.filter(pk=report.pk, resolved_at__isnull=True).update(
            resolved_at=now, resolved_by=actor, resolution=action
        )
        if not claimed:
            raise NotFound("This report is resolved already.")
        message = report.message
        if action == Report.Resolution.DELETE:
            message = message_delete(message=message, actor=actor)
            _close_reports(message=message, actor=actor, now=now)
        audit_record(
            actor=actor,
            action=Action.REPORT_RESOLVED,
            target=f"report #{report.pk} on {message_target(message)}",
            room_id=report.room_id,
            target_user_id=message.author_id,
            message_id=message.pk,
            detail=str(action),
        )
        report.resolved_at, report.resolved_by, report.resolution = now, actor, action
    return report

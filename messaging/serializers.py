from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any
from urllib.parse import quote

from accounts.models import User
from accounts.serializers import user_to_dict

from .models import Attachment, Message


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.isoformat().replace("+00:00", "Z")


# The quoted excerpt of a reply's original, in code points.
QUOTE_CHARS = 200


def quote_dict(*, id: int, seq: int, author: dict[str, Any], body: str, deleted_at: datetime | None) -> dict[str, Any]:
    """A reply's `reply_to`: the original as it is now (its first QUOTE_CHARS characters, "" once deleted)."""
    return {
        "id": id,
        "seq": seq,
        "author": author,
        "body": "" if deleted_at else body[:QUOTE_CHARS],
        "deleted": deleted_at is not None,
    }


def message_quote(message: Message) -> dict[str, Any] | None:
    """`reply_to` of a Message (select_related("reply_to__author") keeps it free of queries)."""
    if message.reply_to_id is None:
        return None
    original = message.reply_to
    if original is None:
        return None
    return quote_dict(
        id=original.pk,
        seq=original.seq,
        author=user_to_dict(original.author),
        body=original.body,
        deleted_at=original.deleted_at,
    )


def message_to_dict(
    message: Message, *, room_slug: str | None = None, reactions: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The full message as stored, `client_id` included; `for_viewer` hides it from others.

    `reactions` come from `messaging.selectors.reactions_for` (none given: []).
    """
    return message_dict(
        id=message.pk,
        room_slug=room_slug or message.room.slug,
        seq=message.seq,
        author=message.author,
        body=message.body,
        html=message.html,
        client_id=message.client_id,
        created_at=message.created_at,
        edited_at=message.edited_at,
        deleted_at=message.deleted_at,
        reply_to=message_quote(message),
        reactions=reactions,
        mentions=message_mentions(message),
        attachments=message_attachments(message),
    )


def message_dict(
    *,
    id: int,
    room_slug: str,
    seq: int,
    author: User,
    body: str,
    client_id: str | None,
    created_at: datetime,
    html: str = "",
    edited_at: datetime | None = None,
    deleted_at: datetime | None = None,
    reply_to: dict[str, Any] | None = None,
    reactions: list[dict[str, Any]] | None = None,
    mentions: list[dict[str, Any]] | None = None,
    attachments: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """`message_to_dict` from the columns, for writers that never build a Message (group commit)."""
    return {
        "id": id,
        "room": room_slug,
        "seq": seq,
        "author": user_to_dict(author),
        "body": "" if deleted_at else body,
        # `body` rendered and sanitized on write (messaging.markdown).
        "html": "" if deleted_at else html,
        "client_id": client_id,
        "created_at": iso(created_at),
        "edited_at": iso(edited_at),
        "deleted": deleted_at is not None,
        "reply_to": reply_to,
        "reactions": reactions if reactions is not None else [],
        # A deleted message mentions nobody (its Mention rows are removed too).
        "mentions": [] if deleted_at else list(mentions or []),
        # A deleted message's files are out of reach too (their downloads are 404).
        "attachments": [] if deleted_at else list(attachments or []),
    }


def for_viewer(data: dict[str, Any], viewer_id: int | None) -> dict[str, Any]:
    """`client_id` is shown to the message's author only."""
    if data.get("client_id") is not None and data["author"]["id"] != viewer_id:
        return {**data, "client_id": None}
    return data


def message_mentions(message: Message) -> list[dict[str, Any]]:
    """`mentions` of a Message: from `messaging.selectors.MENTIONS` when prefetched, else one query."""
    rows = _by_position(message, "mentions", lambda: message.mentions.select_related("user").order_by("position"))
    return [user_to_dict(mention.user) for mention in rows]


def _by_position(message: Message, name: str, query: Callable[[], Iterable[Any]]) -> list[Any]:
    """A message's `name` rows in `position` order: prefetched when they are, else `query()`; none once deleted."""
    cache = getattr(message, "_prefetched_objects_cache", {})
    if name in cache:
        return sorted(cache[name], key=lambda row: row.position)
    if message.pk is None or message.deleted_at is not None:
        return []
    return list(query())


# --- attachments -------------------------------------------------------------------

# A download: /api/attachments/<id>/<name>. The name is there for people and
# for the browser's "save as"; the id alone finds the file.
ATTACHMENT_URL_PREFIX = "/api/attachments/"


def attachment_url(attachment_id: int, name: str) -> str:
    """Where a file is downloaded: a path on this server, with the session or a token."""
    return f"{ATTACHMENT_URL_PREFIX}{attachment_id}/{quote(name, safe='')}"


def attachment_dict(*, id: int, name: str, size: int, content_type: str) -> dict[str, Any]:
    """One entry of a message's `attachments`, and the answer to an upload."""
    return {"id": id, "name": name, "size": size, "content_type": content_type, "url": attachment_url(id, name)}


def attachment_to_dict(attachment: Attachment) -> dict[str, Any]:
    return attachment_dict(
        id=attachment.pk, name=attachment.name, size=attachment.size, content_type=attachment.content_type
    )


def message_attachments(message: Message) -> list[dict[str, Any]]:
    """`attachments` of a Message: from `messaging.selectors.ATTACHMENTS` when prefetched, else one query."""
    rows = _by_position(message, "attachments", lambda: message.attachments.order_by("position"))
    return [attachment_to_dict(attachment) for attachment in rows]

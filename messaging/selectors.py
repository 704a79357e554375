"""Reads of message history. Every query walks the (room, seq) unique index."""

from dataclasses import dataclass
from typing import Any

from django.contrib.postgres.search import SearchQuery, SearchRank, SearchVector
from django.db import connection
from django.db.models import Count, IntegerField, Min, OuterRef, Prefetch, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from accounts.models import User
from common.errors import ChatError, NotFound
from rooms.models import Room
from rooms.selectors import room_check_readable, rooms_readable_by

from .models import Attachment, Mention, Message, Reaction, Report
from .serializers import for_viewer, message_to_dict

MAX_PAGE = 200


# A reply's quote is the original as it is now: joined in, never a query per message.
QUOTE = "reply_to__author"
# A page's mentions in one query, in order of first appearance (serializers.message_mentions).
MENTIONS = Prefetch("mentions", queryset=Mention.objects.select_related("user").order_by("position"))
# A page's attachments in one query, in the sender's order (serializers.message_attachments).
ATTACHMENTS = Prefetch(
    "attachments",
    queryset=Attachment.objects.only("id", "message_id", "position", "name", "size", "content_type").order_by(
        "position"
    ),
)


def _base(room: Room) -> QuerySet[Message]:
    return Message.objects.filter(room=room).select_related("author", QUOTE).prefetch_related(MENTIONS, ATTACHMENTS)


def messages_page(*, room: Room, before: int | None = None, after: int | None = None, limit: int = 50) -> list[Message]:
    """One page of history, ascending by seq.

    No cursor: the newest `limit`. `before=N`: the newest below N. `after=N`:
    the oldest above N. Both: the oldest above `after` and below `before`.
    """
    qs = _base(room)
    if before is not None:
        qs = qs.filter(seq__lt=before)
    if after is not None:
        return list(qs.filter(seq__gt=after).order_by("seq")[:limit])
    page = list(qs.order_by("-seq")[:limit])
    page.reverse()
    return page


def messages_after(*, room_id: int, after: int, limit: int, up_to: int | None = None) -> list[Message]:
    """Messages with seq > after (and <= up_to), oldest first: replay and gap repair."""
    qs = (
        Message.objects.filter(room_id=room_id, seq__gt=after)
        .select_related("author", "room", QUOTE)
        .prefetch_related(MENTIONS, ATTACHMENTS)
    )
    if up_to is not None:
        qs = qs.filter(seq__lte=up_to)
    return list(qs.order_by("seq")[:limit])


def message_get(*, message_id: int) -> Message:
    message = (
        Message.objects.select_related("author", "room", QUOTE)
        .prefetch_related(MENTIONS, ATTACHMENTS)
        .filter(pk=message_id)
        .first()
    )
    if message is None:
        raise NotFound("No such message.")
    return message


def reactions_for(*, message_ids: list[int], viewer_id: int | None) -> dict[int, list[dict[str, Any]]]:
    """`reactions` of each message, `me` for the viewer: two queries for any number of messages.

    One aggregate over the (message, emoji, user) unique index gives each
    emoji's count, in order of first use (`Reaction.rank`); one more reads the
    viewer's own. `viewer_id=None` (a frame shared by everyone) leaves `me` false.
    Messages without reactions are absent from the result.
    """
    if not message_ids:
        return {}
    rows = (
        Reaction.objects.filter(message_id__in=message_ids)
        .values("message_id", "emoji")
        .annotate(count=Count("id"), first=Min("rank"))
        .order_by("message_id", "first")
    )
    mine: set[tuple[int, str]] = set()
    if viewer_id is not None:
        mine = set(
            Reaction.objects.filter(message_id__in=message_ids, user_id=viewer_id).values_list("message_id", "emoji")
        )
    result: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        key = (row["message_id"], row["emoji"])
        result.setdefault(row["message_id"], []).append(
            {"emoji": row["emoji"], "count": row["count"], "me": key in mine}
        )
    return result


def messages_to_dicts(
    messages: list[Message], *, viewer_id: int | None, room_slug: str | None = None
) -> list[dict[str, Any]]:
    """Messages as the viewer sees them (`client_id` their own only, `me` theirs), in a constant number of queries."""
    reactions = reactions_for(message_ids=[m.pk for m in messages], viewer_id=viewer_id)
    return [
        for_viewer(message_to_dict(m, room_slug=room_slug, reactions=reactions.get(m.pk, [])), viewer_id)
        for m in messages
    ]


@dataclass(frozen=True)
class HistoryPage:
    messages: list[Message]
    has_older: bool
    has_newer: bool


def messages_history(
    *, room: Room, before: int | None = None, after: int | None = None, limit: int = 50
) -> HistoryPage:
    """A `messages_page` plus whether anything lies before and after it, for REST's page links.

    For an empty page "before" means at or below `after` and "after" means at
    or above `before`, so a client that overshot still gets a way back.

    Seqs run 1..last_seq with no holes (messages are only soft-deleted), so
    both answers come from the page and the room row, with no extra query:
    an `EXISTS (... seq < N)` probe is where PostgreSQL picks a sequential
    scan, which is what made deep pages slow.
    """
    messages = messages_page(room=room, before=before, after=after, limit=limit)
    last_seq = max(room.last_seq, messages[-1].seq if messages else 0)
    if messages:
        has_older = messages[0].seq > 1
        has_newer = messages[-1].seq < last_seq
    else:
        has_older = after is not None and min(after, last_seq) >= 1
        has_newer = before is not None and last_seq >= max(before, 1)
    return HistoryPage(messages=messages, has_older=has_older, has_newer=has_newer)


# Stemming ("deploys" finds "deployed") as chat users expect; the GIN index in
# migration 0002 is built on exactly this expression, so keep them in step.
SEARCH_CONFIG = "english"


def search_vector() -> SearchVector:
    return SearchVector("body", config=SEARCH_CONFIG)


def messages_search(*, user: User, query: str, room: Room | None = None, limit: int, offset: int = 0) -> list[Message]:
    """Messages the user may read that match `query`, deleted ones excluded.

    PostgreSQL: full-text search (websearch syntax: quotes, OR, -word), best
    match first. Other databases: case-insensitive substring, newest first.
    """
    qs = (
        Message.objects.filter(room__in=rooms_readable_by(user=user).values("pk"), deleted_at__isnull=True)
        .select_related("author", "room", QUOTE)
        .prefetch_related(MENTIONS, ATTACHMENTS)
    )
    if room is not None:
        qs = qs.filter(room=room)
    if connection.vendor == "postgresql":
        vector = search_vector()
        tsquery = SearchQuery(query, config=SEARCH_CONFIG, search_type="websearch")
        qs = (
            qs.annotate(document=vector)
            .filter(document=tsquery)
            .annotate(rank=SearchRank(vector, tsquery))
            .order_by("-rank", "-id")
        )
    else:
        qs = qs.filter(body__icontains=query).order_by("-created_at", "-id")
    return list(qs[offset : offset + limit])


# --- mentions ----------------------------------------------------------------------


def with_mention_count(rooms: QuerySet[Room], *, user: User) -> QuerySet[Room]:
    """Annotate `mention_count` on rooms from `rooms.selectors.rooms_visible_to` (which gives `read_seq`).

    The messages mentioning the user above their read marker, in the same one
    query as the list: each room's count is a range scan of the
    (user, room, seq) index above the marker, never a count over the room's
    history. Not a member (no marker): 0, like `unread_count`. Deleted
    messages lose their mentions, so they never count.
    """
    counts = (
        Mention.objects.filter(user=user, room=OuterRef("pk"), seq__gt=OuterRef("read_seq"))
        .order_by()
        .values("room")
        .annotate(count=Count("pk"))
        .values("count")
    )
    return rooms.annotate(
        mention_count=Coalesce(Subquery(counts, output_field=IntegerField()), Value(0), output_field=IntegerField())
    )


def mentions_page(*, user: User, before: int | None = None, limit: int = 50) -> list[Message]:
    """Messages that mention the user, newest first (by id, below `before`), in rooms they can read now.

    Walks the (user, message) index backwards; a room the user left (private),
    or was banned from, drops out; deleted messages have no mentions.
    """
    rows = Mention.objects.filter(user=user, room__in=rooms_readable_by(user=user).values("pk"))
    if before is not None:
        rows = rows.filter(message_id__lt=before)
    ids = list(rows.order_by("-message_id").values_list("message_id", flat=True)[:limit])
    messages = (
        Message.objects.filter(pk__in=ids)
        .select_related("author", "room", QUOTE)
        .prefetch_related(MENTIONS, ATTACHMENTS)
    )
    return sorted(messages, key=lambda message: -message.pk)


# --- attachments -------------------------------------------------------------------


def attachment_get_readable(*, attachment_id: int, user: User) -> Attachment:
    """The attachment if `user` may download it, else NotFound (never Forbidden: nothing leaks).

    Readable: its message is not deleted and the user can read the room; an
    upload not yet used in a message only by its uploader (who must still be
    able to read the room).
    """
    attachment = Attachment.objects.select_related("room", "message").filter(pk=attachment_id).first()
    if attachment is None:
        raise NotFound("No such file.")
    if attachment.message is None:
        if attachment.uploader_id != user.pk:
            raise NotFound("No such file.")
    elif attachment.message.deleted_at is not None:
        raise NotFound("No such file.")
    try:
        room_check_readable(room=attachment.room, user=user)
    except ChatError as exc:  # a banned reader learns no more than a stranger
        raise NotFound("No such file.") from exc
    return attachment


# --- reports -----------------------------------------------------------------------


def reports_open(*, room: Room) -> list[Report]:
    """The room's open reports, oldest first (a queue), each with its message ready for `messages_to_dicts`.

    A constant number of queries whatever their number: the reports (by the
    partial room/open index) with their reporters, then their messages as
    history loads them (`messages_by_ids`).
    """
    reports = list(
        Report.objects.filter(room=room, resolved_at__isnull=True)
        .select_related("reporter")
        .order_by("created_at", "pk")
    )
    messages = messages_by_ids({report.message_id for report in reports})
    for report in reports:
        report.message = messages[report.message_id]
    return reports


def messages_by_ids(ids: set[int]) -> dict[int, Message]:
    """Messages by id, loaded as `message_get` loads one."""
    if not ids:
        return {}
    rows = (
        Message.objects.filter(pk__in=ids)
        .select_related("author", "room", QUOTE)
        .prefetch_related(MENTIONS, ATTACHMENTS)
    )
    return {message.pk: message for message in rows}

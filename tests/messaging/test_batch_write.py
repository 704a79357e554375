"""Group commit's write path: a fixed number of statements per batch, whatever its size."""

from dataclasses import replace

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from messaging.models import Message
from messaging.serializers import message_to_dict
from messaging.services import NewMessage, message_create, message_edit, messages_create
from rooms.models import Membership, Room
from rooms.services import room_ban
from tests.factories import RoomFactory, UserFactory

pytestmark = pytest.mark.django_db


def _batch(rooms: list[Room], authors: list, size: int, tag: str) -> list[NewMessage]:
    return [
        NewMessage(
            room_id=rooms[i % len(rooms)].pk,
            author=authors[i % len(authors)],
            # Every message mentions the next author (a reader of every room) and someone unknown.
            body=f"{tag} {i} @{authors[(i + 1) % len(authors)].username}, @nobody{i}",
            client_id=f"{tag}-{i}",
        )
        for i in range(size)
    ]


@pytest.mark.parametrize("rate_limit", ["off", "1000/10"])
def test_statements_do_not_grow_with_the_batch(
    alice, private_room, settings, rate_limit, django_capture_on_commit_callbacks
):
    settings.CHAT_RATE_LIMIT = rate_limit
    # Public rooms and one private room the authors belong to: every kind of check runs.
    rooms = [*(RoomFactory(created_by=alice) for _ in range(4)), private_room]
    authors = [alice, *(UserFactory() for _ in range(3))]
    for author in authors[1:]:
        Membership.objects.create(room=private_room, user=author)

    counts, published = [], []
    for batch_rooms, size, tag in (([rooms[0], private_room], 2, "small"), (rooms, 40, "large")):
        requests = _batch(batch_rooms, authors, size, tag)
        with django_capture_on_commit_callbacks(execute=True), CaptureQueriesContext(connection) as ctx:
            results = messages_create(requests=requests, publish=published.extend)
        counts.append(len(ctx.captured_queries))
        assert all(r.created and r.error is None for r in results)
        for req, posted in zip(requests, results, strict=True):
            assert posted.data is not None
            stored = Message.objects.select_related("room", "author").get(pk=posted.message_id)
            assert (stored.room_id, stored.author_id, stored.body) == (req.room_id, req.author.pk, req.body)
            assert posted.data == message_to_dict(stored)
            assert [u["id"] for u in posted.data["mentions"]] == [authors[(requests.index(req) + 1) % 4].pk]

    assert counts[0] == counts[1]
    # SAVEPOINT, lock rooms, retries, bans, private memberships, resolve mentioned usernames,
    # INSERT, INSERT mentions, UPDATE rooms, upsert read markers, RELEASE; and the lookup of
    # retries before the rate limit when there is one.
    assert counts[0] == (11 if rate_limit == "off" else 12)
    mentions = [(g, e) for g, e in published if e["type"] == "user.mention"]
    published = [(g, e) for g, e in published if e["type"] != "user.mention"]
    assert len(mentions) == 42
    for group, event in mentions:
        assert group == f"user.{event['user_id']}"
        assert [u["id"] for u in event["message"]["mentions"]] == [event["user_id"]]
        assert event["room"] == event["message"]["room"]

    # Seqs per room are 1..n in request order, and so are the broadcasts.
    for room in rooms:
        seqs = list(Message.objects.filter(room=room).order_by("pk").values_list("seq", flat=True))
        assert seqs == list(range(1, len(seqs) + 1))
        assert Room.objects.get(pk=room.pk).last_seq == len(seqs)
        assert [e["seq"] for g, e in published if e["room_id"] == room.pk] == seqs
    assert {g for g, _ in published} == {room.group_name for room in rooms}
    assert all(set(e) == {"type", "room_id", "seq", "message"} and e["type"] == "chat.message" for _, e in published)
    # Each author is now a member of every room it posted in, read up to its last message there.
    for author in authors:
        for room in rooms:
            mine = Message.objects.filter(room=room, author=author)
            membership = Membership.objects.get(room=room, user=author)
            assert membership.last_read_seq == max(m.seq for m in mine)
            assert membership.role == ("owner" if author == alice else "member")


def test_retries_answer_the_stored_message_as_it_is_now(alice, bob, lobby):
    original, _ = message_create(room=lobby, author=bob, body="first", client_id="k")
    message_edit(message=original, actor=bob, body="edited")
    results = messages_create(
        requests=[
            NewMessage(room_id=lobby.pk, author=bob, body="again", client_id="k"),
            NewMessage(room_id=lobby.pk, author=alice, body="new", client_id="n"),
            NewMessage(room_id=lobby.pk, author=alice, body="new again", client_id="n"),
        ]
    )
    stored = Message.objects.select_related("room", "author").get(pk=original.pk)
    assert (results[0].data, results[0].created) == (message_to_dict(stored), False)
    assert results[0].data["edited_at"] is not None and results[0].data["body"] == "edited"
    assert results[1].created and not results[2].created
    assert results[2].data == results[1].data
    assert Message.objects.count() == 2


def test_message_create_returns_the_row_as_stored(alice, lobby):
    message, created = message_create(room=lobby, author=alice, body=" hi ", client_id="c")
    stored = Message.objects.get(pk=message.pk)
    assert created
    assert [getattr(message, f.attname) for f in Message._meta.concrete_fields] == [
        getattr(stored, f.attname) for f in Message._meta.concrete_fields
    ]
    assert message_to_dict(message) == message_to_dict(stored)


def test_read_markers_never_undo_a_leave_or_a_ban(alice, bob, carol, lobby, private_room):
    """The upsert runs after the checks: a leave or ban committed in between must stand."""
    from messaging.services import _mark_read

    room_ban(room=lobby, actor=alice, user=carol)
    with transaction.atomic(), connection.cursor() as cursor:
        from django.utils import timezone

        _mark_read(
            cursor, {(private_room.pk, bob.pk): 5, (lobby.pk, carol.pk): 5, (lobby.pk, bob.pk): 5}, timezone.now()
        )
    assert not Membership.objects.filter(room=private_room, user=bob).exists()
    assert not Membership.objects.filter(room=lobby, user=carol).exists()
    assert Membership.objects.get(room=lobby, user=bob).last_read_seq == 5


def test_read_marker_never_moves_back(alice, lobby):
    message_create(room=lobby, author=alice, body="one")
    Membership.objects.filter(room=lobby, user=alice).update(last_read_seq=50)
    message_create(room=lobby, author=alice, body="two")
    assert Membership.objects.get(room=lobby, user=alice).last_read_seq == 50


def test_any_text_survives_the_batch_statements(alice, lobby):
    """Bodies and client_ids travel as array or VALUES parameters: nothing in them is special."""
    texts = ["NULL", "null", '{"a",b}', "back\\slash", "quote'd", 'say "hi"', "a, b", "two  spaces", "😀 ünï", "l1\nl2"]
    requests = [
        NewMessage(room_id=lobby.pk, author=alice, body=text, client_id=text if i % 2 else None)
        for i, text in enumerate(texts)
    ]
    results = messages_create(requests=requests)
    stored = {m.pk: m for m in Message.objects.select_related("room", "author")}
    for text, posted in zip(texts, results, strict=True):
        message = stored[posted.message_id]
        assert posted.data == message_to_dict(message)
        assert message.body == text
    again = messages_create(requests=requests[1::2])
    assert [r.created for r in again] == [False] * 5
    assert [r.data["body"] for r in again] == texts[1::2]


def test_reply_targets_cost_one_statement_for_the_whole_batch(alice, lobby, django_capture_on_commit_callbacks):
    """Replies: every target of a batch is checked (same room, exists) and quoted in one more statement."""
    rooms = [lobby, *(RoomFactory(created_by=alice) for _ in range(3))]
    targets = {room.pk: message_create(room=room, author=alice, body=f"original in {room.slug}")[0] for room in rooms}
    elsewhere = message_create(room=RoomFactory(created_by=alice), author=alice, body="elsewhere")[0]

    def batch(size: int, tag: str, replies: bool) -> list[NewMessage]:
        requests = _batch(rooms, [alice], size, tag)
        if not replies:
            return requests
        requests = [replace(r, reply_to=targets[r.room_id].pk) for r in requests]
        # Another room's message and an unknown id: not_found, in the same statement.
        requests[0] = replace(requests[0], reply_to=elsewhere.pk)
        requests[-1] = replace(requests[-1], reply_to=elsewhere.pk + 1000)
        return requests

    counts = {}
    for size in (3, 40):
        for replies in (False, True):
            requests = batch(size, f"{size}-{replies}", replies)
            with django_capture_on_commit_callbacks(execute=True), CaptureQueriesContext(connection) as ctx:
                results = messages_create(requests=requests, rate_limit=False, publish=lambda events: None)
            counts[(size, replies)] = len(ctx.captured_queries)
            if not replies:
                continue
            assert results[0].error is not None and results[0].error.code == "not_found"
            assert results[-1].error is not None and results[-1].error.code == "not_found"
            for req, posted in zip(requests[1:-1], results[1:-1], strict=True):
                assert posted.created and posted.data is not None
                stored = Message.objects.select_related("room", "author", "reply_to__author").get(pk=posted.message_id)
                assert stored.reply_to_id == req.reply_to
                assert posted.data == message_to_dict(stored)
                assert posted.data["reply_to"]["body"] == f"original in {stored.room.slug}"
    assert counts[(3, True)] == counts[(40, True)] == counts[(3, False)] + 1 == counts[(40, False)] + 1
    # Nothing of the refused requests was stored.
    assert not Message.objects.filter(client_id__in=["3-True-0", "3-True-2", "40-True-0", "40-True-39"]).exists()


def test_a_retry_quotes_the_original_as_it_is_now(alice, bob, lobby):
    original, _ = message_create(room=lobby, author=alice, body="question")
    reply, _ = message_create(room=lobby, author=bob, body="answer", client_id="k", reply_to=original.pk)
    message_edit(message=original, actor=alice, body="better question")
    (again,) = messages_create(requests=[NewMessage(room_id=lobby.pk, author=bob, body="answer", client_id="k")])
    assert not again.created and again.data is not None
    assert again.data["id"] == reply.pk and again.data["reply_to"]["body"] == "better question"


@pytest.mark.parametrize("rate_limit", ["off", "1000/10"])
def test_attachments_add_two_statements_whatever_the_batch(
    alice, private_room, settings, rate_limit, media_root, django_capture_on_commit_callbacks
):
    """Lock the listed uploads (one SELECT) and attach them (one UPDATE): 2 or 40 sends, the same count."""
    from messaging.attachments import attachment_create
    from messaging.models import Attachment
    from tests.attachments import png_upload

    settings.CHAT_RATE_LIMIT = rate_limit
    rooms = [*(RoomFactory(created_by=alice) for _ in range(4)), private_room]
    authors = [alice, *(UserFactory() for _ in range(3))]
    for author in authors[1:]:
        Membership.objects.create(room=private_room, user=author)

    counts = []
    for batch_rooms, size, tag in (([rooms[0], private_room], 2, "small"), (rooms, 40, "large")):
        requests = [
            replace(
                req,
                attachments=[
                    attachment_create(room=room, uploader=req.author, upload=png_upload(f"{tag}-{n}.png")).pk
                    for n in range(2)
                ],
            )
            for req in _batch(batch_rooms, authors, size, tag)
            for room in [next(r for r in rooms if r.pk == req.room_id)]
        ]
        with django_capture_on_commit_callbacks(execute=True), CaptureQueriesContext(connection) as ctx:
            results = messages_create(requests=requests, publish=lambda events: None)
        counts.append(len(ctx.captured_queries))
        for req, posted in zip(requests, results, strict=True):
            assert posted.created and posted.data is not None
            assert [a["id"] for a in posted.data["attachments"]] == list(req.attachments)
            stored = Message.objects.select_related("room", "author").get(pk=posted.message_id)
            assert posted.data == message_to_dict(stored)
            assert list(
                Attachment.objects.filter(message=stored).order_by("position").values_list("pk", flat=True)
            ) == list(req.attachments)

    assert counts[0] == counts[1]
    # Those of test_statements_do_not_grow_with_the_batch, plus the uploads' SELECT ... FOR UPDATE and UPDATE.
    assert counts[0] == (13 if rate_limit == "off" else 14)

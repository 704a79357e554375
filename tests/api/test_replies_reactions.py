"""Replies and reactions over REST (issue 8, parts 2 and 3), and what history costs with them."""

from urllib.parse import quote

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from messaging.models import Message, Reaction
from messaging.services import MAX_REACTIONS, message_create, reaction_set
from rooms.models import Room
from tests.factories import MessageFactory, RoomFactory, UserFactory

from .conftest import assert_error

pytestmark = pytest.mark.django_db

EMOJI = [*"👍😂🎉👀🚀🙏🔥✅😮😢🤔👏💯🙌😅🥳🤝👌🍕🌈", "❤️"]


def reactions_url(message_id: int, emoji: str) -> str:
    return f"/api/messages/{message_id}/reactions/{quote(emoji)}/"


def test_post_a_reply(api, alice, bob, lobby):
    original = MessageFactory(room=lobby, author=alice, body="question?")
    r = api(bob).post("/api/rooms/lobby/messages/", {"body": "answer", "reply_to": original.pk})
    assert r.status_code == 201, r.content
    quote_ = {
        "id": original.pk,
        "seq": 1,
        "author": {"id": alice.pk, "username": "alice", "display_name": "Alice"},
        "body": "question?",
        "deleted": False,
    }
    assert r.json()["reply_to"] == quote_
    reply_id = r.json()["id"]
    assert api(alice).get(f"/api/messages/{reply_id}/").json()["reply_to"] == quote_
    # The quote follows the original's edits and deletion.
    api(alice).patch(f"/api/messages/{original.pk}/", {"body": "edited question"})
    assert api(bob).get(f"/api/messages/{reply_id}/").json()["reply_to"]["body"] == "edited question"
    api(alice).delete(f"/api/messages/{original.pk}/")
    history = api(bob).get("/api/rooms/lobby/messages/").json()["results"]
    assert history[1]["reply_to"] == quote_ | {"body": "", "deleted": True}
    assert history[0]["reply_to"] is None


@pytest.mark.parametrize(
    ("reply_to", "status", "code"),
    [
        ("other-room", 404, "not_found"),
        ("unknown", 404, "not_found"),
        ("1", 400, "bad_request"),
        (0, 400, "bad_request"),
    ],
)
def test_bad_replies_store_nothing(api, alice, bob, lobby, reply_to, status, code):
    elsewhere = MessageFactory(room=RoomFactory(created_by=alice), author=alice)
    target = {"other-room": elsewhere.pk, "unknown": elsewhere.pk + 1000}.get(reply_to, reply_to)
    assert_error(api(bob).post("/api/rooms/lobby/messages/", {"body": "hi", "reply_to": target}), status, code)
    assert_error(api(bob).post("/api/rooms/lobby/messages/", {"body": "hi", "reply_to": 2**64}), 404, "not_found")
    assert not Message.objects.filter(room=lobby).exists()
    assert Room.objects.get(pk=lobby.pk).last_seq == 0


def test_put_and_delete_a_reaction(api, alice, bob, lobby):
    message = MessageFactory(room=lobby, author=alice, body="hi")
    r = api(bob).client.put(reactions_url(message.pk, "👍"))
    assert r.status_code == 200, r.content
    assert r.json()["id"] == message.pk and r.json()["reactions"] == [{"emoji": "👍", "count": 1, "me": True}]
    assert api(bob).client.put(reactions_url(message.pk, "👍")).json()["reactions"][0]["count"] == 1  # once
    r = api(alice).client.put(reactions_url(message.pk, "❤️"))
    assert r.json()["reactions"] == [{"emoji": "👍", "count": 1, "me": False}, {"emoji": "❤️", "count": 1, "me": True}]
    r = api(bob).client.delete(reactions_url(message.pk, "👍"))
    assert r.status_code == 200 and r.json()["reactions"] == [{"emoji": "❤️", "count": 1, "me": False}]
    r = api(bob).client.delete(reactions_url(message.pk, "👍"))  # not there: a no-op
    assert r.status_code == 200 and r.json()["reactions"] == [{"emoji": "❤️", "count": 1, "me": False}]
    assert api(alice).get(f"/api/messages/{message.pk}/").json()["reactions"] == [
        {"emoji": "❤️", "count": 1, "me": True}
    ]


@pytest.mark.parametrize("emoji", ["a", ":)", "👍👍", "❤", "🏽", "%20"])
def test_a_reaction_that_is_not_one_emoji_is_bad_request(api, alice, bob, lobby, emoji):
    message = MessageFactory(room=lobby, author=alice)
    assert_error(api(bob).client.put(reactions_url(message.pk, emoji)), 400, "bad_request")
    assert not Reaction.objects.exists()


def test_reaction_refusals(api, alice, bob, carol, lobby, private_room):
    message = MessageFactory(room=lobby, author=alice)
    secret = MessageFactory(room=private_room, author=alice)
    assert_error(api(bob).client.put(reactions_url(secret.pk, "👍")), 404, "not_found")
    assert_error(api(bob).client.put(reactions_url(secret.pk + 100, "👍")), 404, "not_found")
    assert_error(api(bob).client.put(reactions_url(2**64, "👍")), 404, "not_found")
    for emoji in EMOJI[:MAX_REACTIONS]:
        reaction_set(user=alice, message_id=message.pk, emoji=emoji, on=True)
    assert_error(api(bob).client.put(reactions_url(message.pk, EMOJI[MAX_REACTIONS])), 400, "bad_request")
    api(alice).post("/api/rooms/lobby/bans/", {"username": "carol"})
    assert_error(api(carol).client.put(reactions_url(message.pk, "👍")), 403, "forbidden")
    api(alice).patch("/api/rooms/lobby/", {"is_locked": True})
    assert_error(api(bob).client.put(reactions_url(message.pk, "👍")), 409, "room_locked")
    assert api().client.put(reactions_url(message.pk, "👍")).status_code == 401
    assert Reaction.objects.count() == MAX_REACTIONS
    assert not Reaction.objects.filter(user__in=[bob, carol]).exists()


def _history_with_replies_and_reactions(room: Room, author, count: int) -> None:
    reactors = [author, *(UserFactory() for _ in range(2))]
    previous = None
    for i in range(count):
        message, _ = message_create(
            room=room, author=author, body=f"message {i}", reply_to=previous.pk if previous else None, rate_limit=False
        )
        for n, user in enumerate(reactors):
            reaction_set(user=user, message_id=message.pk, emoji=EMOJI[(i + n) % 3], on=True)
        previous = message


@pytest.mark.parametrize("path", ["history", "replay"])
def test_history_costs_the_same_for_20_and_200_messages(api, alice, bob, path, settings):
    """200 messages, each a reply with reactions: no query per message, in REST history and in a join's replay."""
    from messaging import db

    client = api(alice)  # its token exists before anything is counted
    counts = []
    for size in (20, 200):
        room = RoomFactory(created_by=alice)
        _history_with_replies_and_reactions(room, alice, size)
        with CaptureQueriesContext(connection) as ctx:
            if path == "history":
                page = client.get(f"/api/rooms/{room.slug}/messages/", {"limit": 200}).json()["results"]
            else:
                page = db.join_room.func(user=alice, slug=room.slug, after=0, limit=500).replay
        assert len(page) == size
        assert all(m["reply_to"] is not None for m in page[1:]) and all(len(m["reactions"]) == 3 for m in page)
        assert page[5]["reply_to"]["seq"] == 5 and any(r["me"] for r in page[5]["reactions"])
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1], counts

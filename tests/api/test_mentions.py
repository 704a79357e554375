"""Mentions over REST: `mentions` on messages, `mention_count` on the room list, and GET /api/mentions/."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from messaging.models import Mention, Message
from messaging.services import NewMessage, message_create, message_delete, messages_create
from rooms.models import Membership
from rooms.services import room_ban, room_join, room_leave
from tests.factories import RoomFactory, UserFactory

from .conftest import assert_error

pytestmark = pytest.mark.django_db


def names(message: dict) -> list[str]:
    return [user["username"] for user in message["mentions"]]


def room_entry(client, slug: str) -> dict:
    return next(room for room in client.get("/api/rooms/").json() if room["slug"] == slug)


def test_send_edit_and_read_one_message(api, alice, bob, carol, lobby):
    r = api(alice).post("/api/rooms/lobby/messages/", {"body": "@bob and @Carol: (@bob) @alice", "client_id": "c"})
    assert r.status_code == 201
    message = r.json()
    assert message["mentions"] == [
        {"id": bob.pk, "username": "bob", "display_name": "Bob"},
        {"id": carol.pk, "username": "carol", "display_name": "Carol"},
    ]
    assert names(api(bob).get(f"/api/messages/{message['id']}/").json()) == ["bob", "carol"]
    # A retry answers the stored message, mentions included.
    again = api(alice).post("/api/rooms/lobby/messages/", {"body": "@bob", "client_id": "c"})
    assert (again.status_code, names(again.json())) == (200, ["bob", "carol"])

    edited = api(alice).patch(f"/api/messages/{message['id']}/", {"body": "only @carol now"}).json()
    assert names(edited) == ["carol"]
    assert names(api(bob).get(f"/api/messages/{message['id']}/").json()) == ["carol"]
    deleted = api(alice).delete(f"/api/messages/{message['id']}/").json()
    assert deleted["mentions"] == []


def test_mention_count_follows_the_read_marker(api, alice, bob, lobby, private_room):
    room_join(room=lobby, user=bob)
    client = api(bob)
    assert room_entry(client, "lobby")["mention_count"] == 0
    message_create(room=lobby, author=alice, body="@bob 1")  # seq 1
    message_create(room=lobby, author=alice, body="no mention")  # seq 2
    second, _ = message_create(room=lobby, author=alice, body="@bob 3")  # seq 3
    message_create(room=lobby, author=alice, body="@bob 4 @bob")  # seq 4: one message, counted once
    entry = room_entry(client, "lobby")
    assert (entry["unread_count"], entry["mention_count"]) == (4, 3)

    client.post("/api/rooms/lobby/read/", {"seq": 2})
    entry = room_entry(client, "lobby")
    assert (entry["unread_count"], entry["mention_count"]) == (2, 2)
    assert client.get("/api/rooms/lobby/").json()["mention_count"] == 2

    message_delete(message=second, actor=alice)  # a deleted message no longer counts
    assert room_entry(client, "lobby")["mention_count"] == 1
    client.post("/api/rooms/lobby/read/", {"seq": 4})
    assert room_entry(client, "lobby")["mention_count"] == 0
    # alice's read marker is at her last message; bob's reply mentioning her is above it.
    message_create(room=lobby, author=bob, body="@alice hi")
    assert room_entry(api(alice), "lobby")["mention_count"] == 1
    assert room_entry(client, "lobby")["mention_count"] == 0

    # Not a member: no read marker, so 0 (like unread_count), though the mention exists.
    dave = UserFactory(username="dave")
    message_create(room=lobby, author=alice, body="@dave")
    assert Mention.objects.filter(user=dave).count() == 1
    assert room_entry(api(dave), "lobby")["mention_count"] == 0


def test_room_list_is_one_query_with_mention_counts(api, alice, bob):
    client = api(bob)
    counts = []
    for extra in (1, 8):
        for _ in range(extra):
            room = RoomFactory(created_by=alice)
            room_join(room=room, user=bob)
            message_create(room=room, author=alice, body="@bob")
        with CaptureQueriesContext(connection) as ctx:
            rooms = client.get("/api/rooms/").json()
        assert all(r["mention_count"] == 1 for r in rooms)
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1], counts


def test_mentions_list_pages_newest_first(api, alice, bob, carol, lobby):
    ids = [message_create(room=lobby, author=alice, body=f"@bob {i}")[0].pk for i in range(5)]
    message_create(room=lobby, author=alice, body="@carol not bob")
    message_create(room=lobby, author=bob, body="@bob myself")  # never the author
    client = api(bob)
    first = client.get("/api/mentions/", {"limit": 2}).json()
    assert set(first) == {"results", "next"}
    assert [m["id"] for m in first["results"]] == ids[:-3:-1]
    assert all(names(m) == ["bob"] and m["client_id"] is None for m in first["results"])
    second = client.get(first["next"]).json()
    assert [m["id"] for m in second["results"]] == [ids[2], ids[1]]
    third = client.get(second["next"]).json()
    assert ([m["id"] for m in third["results"]], third["next"]) == ([ids[0]], None)
    everything = client.get("/api/mentions/").json()
    assert [m["id"] for m in everything["results"]] == ids[::-1] and everything["next"] is None
    assert client.get("/api/mentions/", {"before": ids[0]}).json() == {"results": [], "next": None}

    for bad in ("0", "-1", "x", "1.5", ""):
        assert_error(client.get("/api/mentions/", {"limit": bad}), 400, "bad_request")
    for bad in ("x", "-3", str(2**64)):
        assert_error(client.get("/api/mentions/", {"before": bad}), 400, "bad_request")
    assert_error(api().get("/api/mentions/"), 401, "not_authenticated")


def test_mentions_list_only_rooms_the_user_can_still_read(api, alice, bob, lobby, private_room):
    Membership.objects.create(room=private_room, user=bob)
    in_private, _ = message_create(room=private_room, author=alice, body="@bob secret")
    in_lobby, _ = message_create(room=lobby, author=alice, body="@bob public")
    deleted, _ = message_create(room=lobby, author=alice, body="@bob oops")
    message_delete(message=deleted, actor=alice)
    client = api(bob)
    assert [m["id"] for m in client.get("/api/mentions/").json()["results"]] == [in_lobby.pk, in_private.pk]

    room_leave(room=private_room, user=bob)  # a private room left: out of sight
    assert [m["id"] for m in client.get("/api/mentions/").json()["results"]] == [in_lobby.pk]
    room_ban(room=lobby, actor=alice, user=bob)
    assert client.get("/api/mentions/").json()["results"] == []
    assert_error(client.get(f"/api/messages/{in_private.pk}/"), 404, "not_found")


def test_history_with_mentions_costs_the_same_for_20_and_200_messages(api, alice, bob, carol):
    client = api(bob)
    counts = []
    for size in (20, 200):
        room = RoomFactory(created_by=alice)
        messages_create(
            requests=[
                NewMessage(room_id=room.pk, author=alice, body=f"@bob and @carol {i}", client_id=None)
                for i in range(size)
            ]
        )
        with CaptureQueriesContext(connection) as ctx:
            page = client.get(f"/api/rooms/{room.slug}/messages/", {"limit": 200}).json()["results"]
        assert len(page) == size
        assert all(names(m) == ["bob", "carol"] for m in page)
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1], counts

    counts = []
    for size in (20, 200):
        Mention.objects.filter(user=bob).delete()
        room = RoomFactory(created_by=alice)
        messages_create(requests=[NewMessage(room_id=room.pk, author=alice, body=f"@bob {i}") for i in range(size)])
        with CaptureQueriesContext(connection) as ctx:
            page = client.get("/api/mentions/", {"limit": 200}).json()["results"]
        assert len(page) == size and Message.objects.filter(pk=page[0]["id"], room=room).exists()
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1], counts


def test_unknown_and_private_names_mention_nobody(api, alice, bob, private_room):
    UserFactory(username="eve")
    r = api(alice).post("/api/rooms/staff/messages/", {"body": "@eve @bob @ghost"})
    assert r.status_code == 201 and r.json()["mentions"] == []
    assert api(bob).get("/api/mentions/").json()["results"] == []

"""Rooms, membership, roles, bans and read markers over REST."""

import pytest
from asgiref.sync import async_to_sync

from rooms.models import Ban, Membership, Room
from rooms.presence import presence
from tests.api.conftest import assert_error
from tests.factories import MembershipFactory, MessageFactory, RoomFactory

pytestmark = pytest.mark.django_db

ROOM_KEYS = {
    "slug",
    "kind",
    "name",
    "description",
    "is_private",
    "is_locked",
    "last_seq",
    "unread_count",
    "mention_count",
    "is_member",
}


def test_list_shows_public_rooms_and_own_private_ones(api, alice, bob, lobby, private_room):
    other_private = RoomFactory(slug="secret", is_private=True, created_by=alice)
    MembershipFactory(room=other_private, user=bob)
    r = api(bob).get("/api/rooms/")
    assert r.status_code == 200
    rooms = {room["slug"]: room for room in r.json()}
    assert set(rooms) == {"lobby", "secret"}
    assert set(rooms["lobby"]) == ROOM_KEYS
    assert rooms["lobby"]["kind"] == "room"
    assert rooms["lobby"]["is_member"] is False and rooms["secret"]["is_member"] is True
    assert {room["slug"] for room in api(alice).get("/api/rooms/").json()} == {"lobby", "staff", "secret"}


def test_unread_count_is_last_seq_minus_read_marker(api, alice, bob, lobby):
    MessageFactory.create_batch(3, room=lobby, author=alice)
    assert api(bob).post("/api/rooms/lobby/join/").json()["unread_count"] == 0  # marker starts at last_seq
    MessageFactory.create_batch(4, room=lobby, author=alice)
    room = api(bob).get("/api/rooms/lobby/").json()
    assert room["last_seq"] == 7 and room["unread_count"] == 4
    r = api(bob).post("/api/rooms/lobby/read/", {"seq": 5})
    assert r.status_code == 200 and r.json() == {"room": "lobby", "seq": 5, "unread_count": 2}
    # Never backwards, and clamped to last_seq.
    assert api(bob).post("/api/rooms/lobby/read/", {"seq": 2}).json()["seq"] == 5
    assert api(bob).post("/api/rooms/lobby/read/", {"seq": 99}).json() == {"room": "lobby", "seq": 7, "unread_count": 0}
    assert api(bob).get("/api/rooms/").json()[0]["unread_count"] == 0


def test_read_marker_errors(api, bob, carol, lobby, private_room):
    assert_error(api(bob).post("/api/rooms/lobby/read/", {"seq": -1}), 400, "bad_request")
    assert_error(api(bob).post("/api/rooms/lobby/read/", {"seq": "3"}), 400, "bad_request")
    assert_error(api(bob).post("/api/rooms/lobby/read/", {}), 400, "bad_request")
    assert_error(api(bob).post("/api/rooms/lobby/read/", {"seq": 1}), 403, "forbidden")  # not a member
    assert_error(api(bob).post("/api/rooms/staff/read/", {"seq": 1}), 404, "not_found")
    assert_error(api(bob).post("/api/rooms/nope/read/", {"seq": 1}), 404, "not_found")


def test_create_room(api, bob):
    r = api(bob).post("/api/rooms/", {"slug": "dev-talk", "name": " Dev talk ", "is_private": True})
    assert r.status_code == 201
    assert r.json() == {
        "slug": "dev-talk",
        "kind": "room",
        "name": "Dev talk",
        "description": "",
        "is_private": True,
        "is_locked": False,
        "last_seq": 0,
        "unread_count": 0,
        "mention_count": 0,
        "is_member": True,
    }
    assert Membership.objects.get(room__slug="dev-talk", user=bob).role == "owner"


@pytest.mark.parametrize(
    "body",
    [
        {"slug": "lobby", "name": "Again"},  # taken
        {"slug": "Bad Slug", "name": "x"},
        {"slug": "-x", "name": "x"},
        {"slug": "x" * 51, "name": "x"},
        {"slug": "ok", "name": "   "},
        {"slug": "ok", "name": "n" * 101},
        {"slug": "ok"},
        {"slug": "ok", "name": "x", "description": "d" * 2001},
        {"slug": "ok", "name": "x", "is_private": "true"},
    ],
)
def test_create_room_bad_input_is_400(api, bob, lobby, body):
    assert_error(api(bob).post("/api/rooms/", body), 400, "bad_request")
    assert not Room.objects.filter(slug="ok").exists()


def test_detail_hides_foreign_private_rooms(api, alice, bob, private_room):
    assert api(alice).get("/api/rooms/staff/").status_code == 200
    assert_error(api(bob).get("/api/rooms/staff/"), 404, "not_found")
    assert_error(api(bob).get("/api/rooms/no-such-room/"), 404, "not_found")


def test_patch_room_owner_and_moderator_only(api, alice, bob, carol, lobby):
    MembershipFactory(room=lobby, user=carol, role="moderator")
    MembershipFactory(room=lobby, user=bob)
    r = api(carol).patch("/api/rooms/lobby/", {"name": "The Lobby", "description": "Say hi", "is_locked": True})
    assert r.status_code == 200
    assert r.json()["name"] == "The Lobby" and r.json()["is_locked"] is True and r.json()["description"] == "Say hi"
    assert_error(api(bob).patch("/api/rooms/lobby/", {"is_locked": False}), 403, "forbidden")
    assert Room.objects.get(slug="lobby").is_locked is True
    assert_error(api(alice).patch("/api/rooms/lobby/", {"is_locked": "no"}), 400, "bad_request")
    assert_error(api(alice).patch("/api/rooms/lobby/", {"name": ""}), 400, "bad_request")


def test_patch_foreign_private_room_is_404(api, bob, private_room):
    assert_error(api(bob).patch("/api/rooms/staff/", {"is_locked": True}), 404, "not_found")


def test_join_and_leave(api, alice, bob, lobby, private_room):
    r = api(bob).post("/api/rooms/lobby/join/")
    assert r.status_code == 200 and r.json()["is_member"] is True
    assert api(bob).post("/api/rooms/lobby/join/").status_code == 200  # idempotent
    assert api(bob).post("/api/rooms/lobby/leave/").status_code == 204
    assert not Membership.objects.filter(room=lobby, user=bob).exists()
    assert_error(api(bob).post("/api/rooms/staff/join/"), 404, "not_found")
    assert_error(api(bob).post("/api/rooms/staff/leave/"), 404, "not_found")
    assert_error(api(alice).post("/api/rooms/lobby/leave/"), 403, "forbidden")  # the owner stays


def test_banned_user_cannot_join(api, alice, bob, lobby):
    Ban.objects.create(room=lobby, user=bob, banned_by=alice)
    assert_error(api(bob).post("/api/rooms/lobby/join/"), 403, "forbidden")


def test_members_list_with_roles_and_presence(api, alice, bob, carol, lobby, private_room):
    MembershipFactory(room=lobby, user=bob, role="moderator")
    async_to_sync(presence().add)("lobby", bob.pk, "specific.chan-1")
    r = api(carol).get("/api/rooms/lobby/members/")
    assert r.status_code == 200
    assert r.json() == [
        {"user": {"id": alice.pk, "username": "alice", "display_name": "Alice"}, "role": "owner", "online": False},
        {"user": {"id": bob.pk, "username": "bob", "display_name": "Bob"}, "role": "moderator", "online": True},
    ]
    assert_error(api(bob).get("/api/rooms/staff/members/"), 404, "not_found")


def test_add_member_is_the_way_into_a_private_room(api, alice, bob, carol, private_room):
    assert_error(api(bob).get("/api/rooms/staff/"), 404, "not_found")
    r = api(alice).post("/api/rooms/staff/members/", {"username": "bob"})
    assert r.status_code == 201
    assert r.json() == {
        "user": {"id": bob.pk, "username": "bob", "display_name": "Bob"},
        "role": "member",
        "online": False,
    }
    assert api(alice).post("/api/rooms/staff/members/", {"username": "bob"}).status_code == 200
    assert api(bob).get("/api/rooms/staff/").status_code == 200
    # A plain member cannot add people; outsiders do not learn the room exists.
    assert_error(api(bob).post("/api/rooms/staff/members/", {"username": "carol"}), 403, "forbidden")
    assert_error(api(carol).post("/api/rooms/staff/members/", {"username": "carol"}), 404, "not_found")
    assert_error(api(alice).post("/api/rooms/staff/members/", {"username": "ghost"}), 400, "bad_request")
    assert_error(api(alice).post("/api/rooms/staff/members/", {}), 400, "bad_request")


def test_change_role_owner_only(api, alice, bob, carol, lobby):
    MembershipFactory(room=lobby, user=bob)
    MembershipFactory(room=lobby, user=carol, role="moderator")
    r = api(alice).patch("/api/rooms/lobby/members/bob/", {"role": "moderator"})
    assert r.status_code == 200 and r.json()["role"] == "moderator"
    assert Membership.objects.get(room=lobby, user=bob).role == "moderator"
    assert api(alice).patch("/api/rooms/lobby/members/bob/", {"role": "member"}).json()["role"] == "member"
    assert_error(api(carol).patch("/api/rooms/lobby/members/bob/", {"role": "moderator"}), 403, "forbidden")
    assert_error(api(alice).patch("/api/rooms/lobby/members/bob/", {"role": "owner"}), 400, "bad_request")
    assert_error(api(alice).patch("/api/rooms/lobby/members/alice/", {"role": "member"}), 400, "bad_request")
    assert_error(api(alice).patch("/api/rooms/lobby/members/ghost/", {"role": "member"}), 404, "not_found")


def test_change_role_needs_the_role_field(api, alice, bob, lobby):
    MembershipFactory(room=lobby, user=bob)
    assert_error(api(alice).patch("/api/rooms/lobby/members/bob/", {}), 400, "bad_request")


def test_ban_and_unban(api, alice, bob, carol, lobby):
    MembershipFactory(room=lobby, user=bob)
    MessageFactory(room=lobby, author=alice)
    r = api(alice).post("/api/rooms/lobby/bans/", {"username": "bob"})
    assert r.status_code == 201
    body = r.json()
    assert body["room"] == "lobby" and body["user"]["username"] == "bob" and body["banned_by"]["username"] == "alice"
    assert body["created_at"].endswith("Z")
    # Banned at once: no membership, no history, no sending, no rejoining.
    assert not Membership.objects.filter(room=lobby, user=bob).exists()
    assert_error(api(bob).get("/api/rooms/lobby/messages/"), 403, "forbidden")
    assert_error(api(bob).post("/api/rooms/lobby/messages/", {"body": "hi"}), 403, "forbidden")
    assert_error(api(bob).post("/api/rooms/lobby/join/"), 403, "forbidden")
    # Only owners and moderators ban or lift bans.
    assert_error(api(carol).post("/api/rooms/lobby/bans/", {"username": "alice"}), 403, "forbidden")
    assert_error(api(carol).delete("/api/rooms/lobby/bans/bob/"), 403, "forbidden")
    assert api(alice).delete("/api/rooms/lobby/bans/bob/").status_code == 204
    assert_error(api(alice).delete("/api/rooms/lobby/bans/bob/"), 404, "not_found")
    assert api(bob).get("/api/rooms/lobby/messages/").status_code == 200


def test_ban_errors(api, alice, bob, lobby):
    assert_error(api(alice).post("/api/rooms/lobby/bans/", {"username": "alice"}), 400, "bad_request")
    assert_error(api(alice).post("/api/rooms/lobby/bans/", {"username": "ghost"}), 400, "bad_request")
    assert_error(api(alice).delete("/api/rooms/lobby/bans/ghost/"), 404, "not_found")
    assert_error(api(alice).post("/api/rooms/nope/bans/", {"username": "bob"}), 404, "not_found")

"""Direct messages over REST and the websocket: POST /api/dms/, `kind`, and a DM's rules."""

import re

import pytest
from channels.db import database_sync_to_async

from messaging.models import Message
from rooms.models import SLUG_RE, Membership, Room
from tests.api.conftest import assert_error
from tests.api.test_realtime import call
from tests.api.test_rooms import ROOM_KEYS
from tests.factories import MessageFactory, UserFactory

pytestmark = pytest.mark.django_db


def open_dm(api, user, *usernames):
    return api(user).post("/api/dms/", {"usernames": list(usernames)})


def test_open_is_201_then_200_with_the_same_room(api, alice, bob):
    first = open_dm(api, alice, "bob")
    assert first.status_code == 201
    room = first.json()
    assert set(room) == ROOM_KEYS
    assert re.fullmatch(SLUG_RE, room["slug"])
    assert room | {"slug": None} == {
        "slug": None,
        "kind": "dm",
        "name": "Bob",  # the other participant, as alice sees it
        "description": "",
        "is_private": True,
        "is_locked": False,
        "last_seq": 0,
        "unread_count": 0,
        "mention_count": 0,
        "is_member": True,
    }
    again = open_dm(api, alice, "bob")
    assert again.status_code == 200 and again.json() == room
    from_bob = open_dm(api, bob, "alice")
    assert from_bob.status_code == 200
    assert from_bob.json() == room | {"name": "Alice"}
    assert Room.objects.filter(kind="dm").count() == 1
    assert set(Membership.objects.filter(room__slug=room["slug"]).values_list("role", flat=True)) == {"member"}


def test_the_same_set_in_any_order_is_the_same_room(api, alice, bob, carol):
    created = open_dm(api, alice, "bob", "carol")
    assert created.status_code == 201 and created.json()["name"] == "Bob, Carol"
    slug = created.json()["slug"]
    for user, names in ((carol, ["bob", "alice"]), (bob, ["alice", "carol"]), (alice, ["carol", "bob", "carol"])):
        r = open_dm(api, user, *names)
        assert r.status_code == 200 and r.json()["slug"] == slug
    assert open_dm(api, carol, "alice", "bob").json()["name"] == "Alice, Bob"
    # A different set is a different room.
    pair = open_dm(api, alice, "bob")
    assert pair.status_code == 201 and pair.json()["slug"] != slug


def test_eight_others_and_no_more(api, alice):
    others = [UserFactory().username for _ in range(9)]
    assert open_dm(api, alice, *others[:8]).status_code == 201
    assert_error(open_dm(api, alice, *others), 400, "bad_request")
    assert Room.objects.filter(kind="dm").count() == 1


@pytest.mark.parametrize(
    "body",
    [
        {"usernames": []},
        {"usernames": ["alice"]},  # a DM with oneself
        {"usernames": ["alice", "alice"]},
        {"usernames": ["ghost"]},  # unknown
        {"usernames": ["bob", "ghost"]},
        {"usernames": ["gone"]},  # deactivated
        {"usernames": "bob"},
        {"usernames": [["bob"]]},
        {"usernames": [3]},
        {"usernames": ["bo\x00b"]},
        {"username": "bob"},
        {},
    ],
)
def test_bad_requests_store_nothing(api, alice, bob, body):
    UserFactory(username="gone", is_active=False)
    assert_error(api(alice).post("/api/dms/", body), 400, "bad_request")
    assert not Room.objects.filter(kind="dm").exists()


def test_open_needs_authentication(api, bob):
    assert_error(api().post("/api/dms/", {"usernames": ["bob"]}), 401, "not_authenticated")


def test_room_list_shows_each_participant_their_dms_with_the_rest(api, alice, bob, carol, lobby):
    slug = open_dm(api, bob, "carol").json()["slug"]
    bobs = {r["slug"]: r for r in api(bob).get("/api/rooms/").json()}
    assert set(bobs) == {"lobby", slug}
    assert (bobs[slug]["kind"], bobs[slug]["name"], bobs[slug]["is_member"]) == ("dm", "Carol", True)
    assert bobs["lobby"]["kind"] == "room"
    assert api(carol).get(f"/api/rooms/{slug}/").json()["name"] == "Bob"
    assert {r["slug"] for r in api(alice).get("/api/rooms/").json()} == {"lobby"}  # staff, but not in it


def test_room_list_names_dms_without_a_query_per_room(api, alice, lobby):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = api(alice)

    def queries_for_list() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/api/rooms/").status_code == 200
        return len(captured.captured_queries)

    open_dm(api, alice, UserFactory().username)
    few = queries_for_list()
    for _ in range(6):
        open_dm(api, alice, UserFactory().username, UserFactory().username)
    assert queries_for_list() == few
    names = [r["name"] for r in client.get("/api/rooms/").json() if r["kind"] == "dm"]
    # One DM with one other person, six with two: each named after its other participants.
    assert sorted(name.count(", ") for name in names) == [0] + [1] * 6


def test_participants_read_write_and_mark_read_as_in_a_private_room(api, bob, carol):
    slug = open_dm(api, bob, "carol").json()["slug"]
    sent = api(bob).post(f"/api/rooms/{slug}/messages/", {"body": "psst, carol"})
    assert sent.status_code == 201 and sent.json()["room"] == slug and sent.json()["seq"] == 1
    assert api(carol).get(f"/api/rooms/{slug}/").json()["unread_count"] == 1
    history = api(carol).get(f"/api/rooms/{slug}/messages/").json()["results"]
    assert [m["body"] for m in history] == ["psst, carol"]
    assert api(carol).post(f"/api/rooms/{slug}/read/", {"seq": 1}).json()["unread_count"] == 0
    assert api(carol).post(f"/api/rooms/{slug}/join/").status_code == 200  # already in: no-op
    members = api(carol).get(f"/api/rooms/{slug}/members/").json()
    assert sorted((m["user"]["username"], m["role"]) for m in members) == [("bob", "member"), ("carol", "member")]
    found = api(carol).get("/api/search/", {"q": "psst", "room": slug}).json()["results"]
    assert [m["id"] for m in found] == [sent.json()["id"]]
    assert api(bob).delete(f"/api/messages/{sent.json()['id']}/").status_code == 200  # the author deletes


def test_owner_powers_are_403_in_a_dm(api, alice, bob, carol, dave, bob_carol_dm):
    slug = bob_carol_dm.slug
    for user in (bob, carol):
        client = api(user)
        assert_error(client.post(f"/api/rooms/{slug}/members/", {"username": "dave"}), 403, "forbidden")
        assert_error(client.patch(f"/api/rooms/{slug}/", {"is_locked": True}), 403, "forbidden")
        assert_error(client.patch(f"/api/rooms/{slug}/", {"name": "Our room"}), 403, "forbidden")
        other = "carol" if user == bob else "bob"
        assert_error(client.post(f"/api/rooms/{slug}/bans/", {"username": other}), 403, "forbidden")
        assert_error(client.delete(f"/api/rooms/{slug}/bans/{other}/"), 403, "forbidden")
        assert_error(client.patch(f"/api/rooms/{slug}/members/{other}/", {"role": "moderator"}), 403, "forbidden")
        assert_error(client.post(f"/api/rooms/{slug}/leave/"), 403, "forbidden")
    bob_carol_dm.refresh_from_db()
    assert (bob_carol_dm.is_locked, bob_carol_dm.name) == (False, "Bob, Carol")
    assert sorted(bob_carol_dm.memberships.values_list("user__username", "role")) == [
        ("bob", "member"),
        ("carol", "member"),
    ]


def test_a_dm_is_not_found_for_everyone_else(api, alice, bob, dave, bob_carol_dm):
    MessageFactory(room=bob_carol_dm, author=bob, body="nobody else reads this")
    message = Message.objects.get(room=bob_carol_dm)
    slug = bob_carol_dm.slug
    for user in (dave, alice):  # alice is staff; staff read DMs in the admin only
        client = api(user)
        assert_error(client.get(f"/api/rooms/{slug}/"), 404, "not_found")
        assert_error(client.get(f"/api/rooms/{slug}/messages/"), 404, "not_found")
        assert_error(client.post(f"/api/rooms/{slug}/messages/", {"body": "hi"}), 404, "not_found")
        assert_error(client.get(f"/api/rooms/{slug}/members/"), 404, "not_found")
        assert_error(client.post(f"/api/rooms/{slug}/join/"), 404, "not_found")
        assert_error(client.post(f"/api/rooms/{slug}/leave/"), 404, "not_found")
        assert_error(client.post(f"/api/rooms/{slug}/read/", {"seq": 1}), 404, "not_found")
        assert_error(client.post(f"/api/rooms/{slug}/members/", {"username": "dave"}), 404, "not_found")
        assert_error(client.post(f"/api/rooms/{slug}/bans/", {"username": "bob"}), 404, "not_found")
        assert_error(client.get(f"/api/messages/{message.pk}/"), 404, "not_found")
        assert_error(client.get("/api/search/", {"q": "nobody", "room": slug}), 404, "not_found")
        assert client.get("/api/search/", {"q": "nobody"}).json()["results"] == []
    assert not Membership.objects.filter(room=bob_carol_dm, user__in=[alice, dave]).exists()


def test_schema_documents_dms_and_kind(api):
    schema = api().get("/api/schema/").json()
    post = schema["paths"]["/api/dms/"]["post"]
    assert {"200", "201", "400", "401"} <= set(post["responses"])
    kind = schema["components"]["schemas"]["Room"]["properties"]["kind"]["allOf"][0]["$ref"].rsplit("/", 1)[1]
    assert schema["components"]["schemas"][kind]["enum"] == ["room", "dm"]
    assert "Room" in [ref["$ref"].rsplit("/", 1)[1] for ref in _response_refs(post, "201", "200")]
    request = post["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert schema["components"]["schemas"][request]["required"] == ["usernames"]


def _response_refs(operation: dict, *statuses: str) -> list[dict]:
    return [operation["responses"][code]["content"]["application/json"]["schema"] for code in statuses]


# --- over the websocket ----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_send_and_receive_in_a_dm_over_the_websocket(ws, bob, carol):
    r = await call(bob, "post", "/api/dms/", {"usernames": ["carol"]})
    slug = r.json()["slug"]
    async with ws(bob) as b, ws(carol) as c:
        joined = await c.join(slug)
        assert joined["last_seq"] == 0
        await b.join(slug)
        await b.send(type="send", room=slug, body="hello in private", client_id="d1", ref="r1")
        ack = await b.recv_type("ack")
        assert ack["ref"] == "r1" and ack["message"]["room"] == slug and ack["message"]["seq"] == 1
        got = await c.recv_type("message")
        assert got["message"]["body"] == "hello in private" and got["message"]["author"]["username"] == "bob"
        assert got["message"]["client_id"] is None  # carol does not see bob's client_id
        await c.send(type="read", room=slug, seq=1)
        await c.send(type="ping")
        await c.recv_type("pong")
        r = await call(carol, "get", f"/api/rooms/{slug}/")
        assert r.json()["unread_count"] == 0


@pytest.mark.django_db(transaction=True)
async def test_outsiders_cannot_join_or_send_in_a_dm_over_the_websocket(ws, alice, dave, bob_carol_dm):
    slug = bob_carol_dm.slug
    for outsider in (dave, alice):
        async with ws(outsider) as o:
            await o.send(type="join", room=slug, ref="j")
            error = await o.recv_type("error")
            assert (error["code"], error["room"], error["ref"]) == ("not_found", slug, "j")
            await o.send(type="send", room=slug, body="let me in", client_id="x", ref="s")
            error = await o.recv_type("error")
            assert error["code"] in ("not_found", "not_joined") and error["ref"] == "s"
    assert not await Message.objects.filter(room=bob_carol_dm).aexists()
    assert not await database_sync_to_async(
        Membership.objects.filter(room=bob_carol_dm, user__in=[alice, dave]).exists
    )()


@pytest.mark.django_db(transaction=True)
async def test_room_updated_carries_kind(ws, alice, bob, lobby):
    async with ws(bob) as b:
        await b.join("lobby")
        await call(alice, "patch", "/api/rooms/lobby/", {"is_locked": True})
        frame = await b.recv_type("room_updated")
        assert frame["room"]["kind"] == "room" and frame["room"]["is_locked"] is True

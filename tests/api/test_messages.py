"""History pages, sending, editing, deleting over REST."""

from urllib.parse import parse_qs, urlparse

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from messaging.models import Message
from rooms.models import Ban, Room
from tests.api.conftest import assert_error
from tests.factories import MembershipFactory, MessageFactory

pytestmark = pytest.mark.django_db

MESSAGE_KEYS = {
    "id",
    "room",
    "seq",
    "author",
    "body",
    "html",
    "client_id",
    "created_at",
    "edited_at",
    "deleted",
    "reply_to",
    "reactions",
    "mentions",
    "attachments",
}


def fill(room: Room, author, count: int) -> None:
    """`count` messages with seq 1..count, written in one statement."""
    Message.objects.bulk_create(
        Message(room=room, seq=seq, author=author, body=f"message {seq}") for seq in range(1, count + 1)
    )
    Room.objects.filter(pk=room.pk).update(last_seq=count)


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlparse(url).query).items()}


# --- history ------------------------------------------------------------------


def test_newest_page_by_default(api, alice, bob, lobby):
    fill(lobby, alice, 120)
    r = api(bob).get("/api/rooms/lobby/messages/")
    assert r.status_code == 200
    page = r.json()
    assert set(page) == {"results", "previous", "next"}
    assert [m["seq"] for m in page["results"]] == list(range(71, 121))
    assert set(page["results"][0]) == MESSAGE_KEYS
    assert page["next"] is None  # ends at the newest message
    assert page["previous"] == "http://testserver/api/rooms/lobby/messages/?before=71&limit=50"


def test_before_and_after_cursors(api, alice, bob, lobby):
    fill(lobby, alice, 30)
    before = api(bob).get("/api/rooms/lobby/messages/", {"before": 11, "limit": 5}).json()
    assert [m["seq"] for m in before["results"]] == [6, 7, 8, 9, 10]
    assert query(before["previous"]) == {"before": "6", "limit": "5"}
    assert query(before["next"]) == {"after": "10", "limit": "5"}
    after = api(bob).get("/api/rooms/lobby/messages/", {"after": 0, "limit": 5}).json()
    assert [m["seq"] for m in after["results"]] == [1, 2, 3, 4, 5]
    assert after["previous"] is None  # nothing older
    both = api(bob).get("/api/rooms/lobby/messages/", {"after": 3, "before": 7, "limit": 50}).json()
    assert [m["seq"] for m in both["results"]] == [4, 5, 6]


def test_walk_1000_messages_backwards_and_forwards(api, alice, bob, lobby):
    fill(lobby, alice, 1000)
    client = api(bob)

    def walk(url: str, link: str) -> list[list[int]]:
        pages = []
        while url is not None:
            r = client.get(url)
            assert r.status_code == 200
            seqs = [m["seq"] for m in r.json()["results"]]
            assert seqs == sorted(seqs) and seqs
            pages.append(seqs)
            url = r.json()[link]
        return pages

    backwards = walk("/api/rooms/lobby/messages/?limit=37", "previous")
    assert [seq for page in reversed(backwards) for seq in page] == list(range(1, 1001))
    forwards = walk("/api/rooms/lobby/messages/?after=0&limit=200", "next")
    assert len(forwards) == 5
    assert [seq for page in forwards for seq in page] == list(range(1, 1001))
    # And back from the last page the links lead to the same boundaries.
    last = client.get("/api/rooms/lobby/messages/?after=800&limit=200").json()
    assert last["next"] is None and query(last["previous"]) == {"before": "801", "limit": "200"}


def test_pages_are_keyset_queries(api, alice, bob, lobby):
    fill(lobby, alice, 500)
    client = api(bob)
    client.get("/api/rooms/lobby/messages/", {"before": 3})  # authenticate/warm up
    counts = []
    for params in ({"before": 20}, {"before": 480}, {"after": 5}, {"after": 400}, {}):
        with CaptureQueriesContext(connection) as ctx:
            assert client.get("/api/rooms/lobby/messages/", params).status_code == 200
        assert not any("OFFSET" in q["sql"].upper() for q in ctx.captured_queries)
        counts.append(len(ctx.captured_queries))
    assert len(set(counts)) == 1, counts  # the same queries at any depth


def test_empty_pages_still_link_back(api, alice, bob, lobby):
    assert api(bob).get("/api/rooms/lobby/messages/").json() == {"results": [], "previous": None, "next": None}
    fill(lobby, alice, 10)
    past_end = api(bob).get("/api/rooms/lobby/messages/", {"after": 10}).json()
    assert past_end["results"] == [] and past_end["next"] is None
    assert query(past_end["previous"]) == {"before": "11", "limit": "50"}
    before_start = api(bob).get("/api/rooms/lobby/messages/", {"before": 1}).json()
    assert before_start["results"] == [] and before_start["previous"] is None
    assert query(before_start["next"]) == {"after": "0", "limit": "50"}


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": -5},
        {"limit": "ten"},
        {"limit": ""},
        {"limit": "1.5"},
        {"before": "x"},
        {"before": -1},
        {"after": "1e3"},
        {"after": 2**64},
    ],
)
def test_bad_history_parameters_are_400(api, bob, lobby, params):
    assert_error(api(bob).get("/api/rooms/lobby/messages/", params), 400, "bad_request")


def test_limit_above_max_is_clamped(api, alice, bob, lobby):
    fill(lobby, alice, 300)
    page = api(bob).get("/api/rooms/lobby/messages/", {"limit": 1000}).json()
    assert len(page["results"]) == 200
    assert query(page["previous"]) == {"before": "101", "limit": "200"}


def test_history_readers(api, alice, bob, carol, lobby, private_room):
    MessageFactory(room=private_room, author=alice)
    assert api(bob).get("/api/rooms/lobby/messages/").status_code == 200  # public, not even a member
    assert_error(api(bob).get("/api/rooms/staff/messages/"), 404, "not_found")
    MembershipFactory(room=private_room, user=carol)
    assert api(carol).get("/api/rooms/staff/messages/").json()["results"][0]["seq"] == 1
    Ban.objects.create(room=lobby, user=bob)
    assert_error(api(bob).get("/api/rooms/lobby/messages/"), 403, "forbidden")
    assert_error(api(bob).get("/api/rooms/nope/messages/"), 404, "not_found")


def test_history_hides_client_id_from_others_and_blanks_deleted(api, alice, bob, lobby):
    mine = MessageFactory(room=lobby, author=bob, client_id="c-1", body="mine")
    gone = MessageFactory(room=lobby, author=alice, body="secret", deleted_at=timezone.now())
    as_bob = api(bob).get("/api/rooms/lobby/messages/").json()["results"]
    as_alice = api(alice).get("/api/rooms/lobby/messages/").json()["results"]
    assert as_bob[0]["client_id"] == "c-1" and as_alice[0]["client_id"] is None
    assert as_bob[1] | {"created_at": None} == {
        "id": gone.pk,
        "room": "lobby",
        "seq": 2,
        "author": {"id": alice.pk, "username": "alice", "display_name": "Alice"},
        "body": "",
        "html": "",
        "client_id": None,
        "created_at": None,
        "edited_at": None,
        "deleted": True,
        "reply_to": None,
        "reactions": [],
        "mentions": [],
        "attachments": [],
    }
    assert mine.seq == 1


# --- sending ------------------------------------------------------------------


def test_send(api, bob, lobby):
    r = api(bob).post("/api/rooms/lobby/messages/", {"body": "  hello \n", "client_id": "k1"})
    assert r.status_code == 201
    msg = r.json()
    assert msg["body"] == "hello" and msg["seq"] == 1 and msg["client_id"] == "k1" and msg["room"] == "lobby"
    assert msg["author"]["username"] == "bob" and msg["deleted"] is False and msg["edited_at"] is None
    assert msg["created_at"].endswith("Z")
    assert Room.objects.get(pk=lobby.pk).last_seq == 1
    # Sending marks the room read for its author (and joins a public room).
    assert api(bob).get("/api/rooms/lobby/").json()["unread_count"] == 0
    second = api(bob).post("/api/rooms/lobby/messages/", {"body": "no client id"})
    assert second.status_code == 201 and second.json()["seq"] == 2 and second.json()["client_id"] is None


def test_idempotent_repeat_returns_original_with_200(api, bob, lobby):
    first = api(bob).post("/api/rooms/lobby/messages/", {"body": "once", "client_id": "same"})
    again = api(bob).post("/api/rooms/lobby/messages/", {"body": "once (retry)", "client_id": "same"})
    assert first.status_code == 201 and again.status_code == 200
    assert again.json() == first.json()
    assert Message.objects.count() == 1 and Room.objects.get(pk=lobby.pk).last_seq == 1


def test_locked_room_is_409(api, alice, bob, lobby):
    Room.objects.filter(pk=lobby.pk).update(is_locked=True)
    assert_error(api(bob).post("/api/rooms/lobby/messages/", {"body": "hi"}), 409, "room_locked")
    assert_error(api(alice).post("/api/rooms/lobby/messages/", {"body": "even the owner"}), 409, "room_locked")
    assert Message.objects.count() == 0


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ("a" * 4000, 201),
        ("  " + "a" * 4000 + "\n\t", 201),
        ("a" * 4001, 400),
        ("😀" * 4000, 201),  # 4000 code points, 16000 bytes
        ("😀" * 4001, 400),
    ],
)
def test_body_length_counts_code_points_after_trimming(api, bob, lobby, body, status):
    r = api(bob).post("/api/rooms/lobby/messages/", {"body": body})
    if status == 201:
        assert r.status_code == 201 and r.json()["body"] == body.strip()
    else:
        assert_error(r, 400, "too_long")


@pytest.mark.parametrize(
    "payload",
    [
        {"body": ""},
        {"body": "   \n "},
        {},
        {"body": 5},
        {"body": None},
        {"body": "hi", "client_id": ""},
        {"body": "hi", "client_id": "x" * 65},
        {"body": "hi", "client_id": 7},
        {"body": "nul \x00 inside"},
    ],
)
def test_bad_message_input_is_400(api, bob, lobby, payload):
    assert_error(api(bob).post("/api/rooms/lobby/messages/", payload), 400, "bad_request")
    assert Message.objects.count() == 0


def test_send_to_private_room_needs_membership(api, alice, bob, private_room):
    assert_error(api(bob).post("/api/rooms/staff/messages/", {"body": "hi"}), 404, "not_found")
    assert api(alice).post("/api/rooms/staff/messages/", {"body": "hi"}).status_code == 201


def test_rate_limit_is_429_with_retry_after(api, bob, lobby, settings, monkeypatch):
    import types

    import common.ratelimit

    settings.CHAT_RATE_LIMIT = "3/60"
    # A fixed clock, 30 s into a 60 s window, so the test cannot straddle two windows.
    monkeypatch.setattr(common.ratelimit, "time", types.SimpleNamespace(time=lambda: 60 * 1000 + 30.0))
    client = api(bob)
    for i in range(3):
        assert client.post("/api/rooms/lobby/messages/", {"body": f"m{i}", "client_id": f"c{i}"}).status_code == 201
    r = client.post("/api/rooms/lobby/messages/", {"body": "one too many"})
    assert_error(r, 429, "rate_limited")
    assert r["Retry-After"] == "30"
    # A retry of an already stored message is not a new message: no budget spent, no 429.
    assert client.post("/api/rooms/lobby/messages/", {"body": "m0", "client_id": "c0"}).status_code == 200
    assert Message.objects.count() == 3


# --- editing and deleting -----------------------------------------------------


def test_edit_by_author(api, bob, lobby):
    msg = MessageFactory(room=lobby, author=bob, body="tpyo")
    r = api(bob).patch(f"/api/messages/{msg.pk}/", {"body": " typo "})
    assert r.status_code == 200
    assert r.json()["body"] == "typo" and r.json()["edited_at"] is not None and r.json()["seq"] == msg.seq


def test_edit_refusals(api, alice, bob, carol, lobby, private_room):
    msg = MessageFactory(room=lobby, author=bob, body="mine")
    assert_error(api(alice).patch(f"/api/messages/{msg.pk}/", {"body": "owner cannot"}), 403, "forbidden")
    assert_error(api(carol).patch(f"/api/messages/{msg.pk}/", {"body": "x"}), 403, "forbidden")
    assert_error(api(bob).patch(f"/api/messages/{msg.pk}/", {"body": "a" * 4001}), 400, "too_long")
    assert_error(api(bob).patch(f"/api/messages/{msg.pk}/", {}), 400, "bad_request")
    assert_error(api(bob).patch("/api/messages/999999/", {"body": "x"}), 404, "not_found")
    hidden = MessageFactory(room=private_room, author=alice)
    assert_error(api(bob).patch(f"/api/messages/{hidden.pk}/", {"body": "x"}), 404, "not_found")
    Room.objects.filter(pk=lobby.pk).update(is_locked=True)
    assert_error(api(bob).patch(f"/api/messages/{msg.pk}/", {"body": "locked"}), 409, "room_locked")
    assert Message.objects.get(pk=msg.pk).body == "mine"


def test_delete_by_author_moderator_or_staff(api, alice, bob, carol, lobby):
    MembershipFactory(room=lobby, user=carol, role="moderator")
    by_author, by_moderator, by_staff = (MessageFactory(room=lobby, author=bob) for _ in range(3))
    for client, msg in ((api(bob), by_author), (api(carol), by_moderator), (api(alice), by_staff)):
        r = client.delete(f"/api/messages/{msg.pk}/")
        assert r.status_code == 200
        assert r.json()["deleted"] is True and r.json()["body"] == "" and r.json()["id"] == msg.pk
        assert r.json()["seq"] == msg.seq
    assert Message.objects.filter(deleted_at__isnull=False).count() == 3  # soft: rows kept
    # Deleting again is harmless.
    assert api(bob).delete(f"/api/messages/{by_author.pk}/").status_code == 200


def test_delete_refusals(api, alice, bob, carol, lobby, private_room):
    msg = MessageFactory(room=lobby, author=bob)
    assert_error(api(carol).delete(f"/api/messages/{msg.pk}/"), 403, "forbidden")
    hidden = MessageFactory(room=private_room, author=alice)
    assert_error(api(bob).delete(f"/api/messages/{hidden.pk}/"), 404, "not_found")
    assert_error(api(bob).delete("/api/messages/424242/"), 404, "not_found")
    assert not Message.objects.filter(deleted_at__isnull=False).exists()


def test_get_one_message(api, alice, bob, lobby, private_room):
    msg = MessageFactory(room=lobby, author=alice, client_id="secret-key")
    r = api(bob).get(f"/api/messages/{msg.pk}/")
    assert r.status_code == 200 and r.json()["id"] == msg.pk and r.json()["client_id"] is None
    assert api(alice).get(f"/api/messages/{msg.pk}/").json()["client_id"] == "secret-key"
    hidden = MessageFactory(room=private_room, author=alice)
    assert_error(api(bob).get(f"/api/messages/{hidden.pk}/"), 404, "not_found")

"""Sending with attachments: websocket and REST, the rules on ids, races, and every message dict carrying them."""

import threading

import pytest
from channels.db import database_sync_to_async
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from messaging.attachments import attachment_create
from messaging.models import Attachment, Message
from messaging.services import NewMessage, message_create, message_delete, message_edit, messages_create
from rooms.models import Membership
from tests.api.conftest import Api, assert_error
from tests.attachments import png_upload
from tests.factories import RoomFactory

pytestmark = pytest.mark.django_db(transaction=True)


def make_uploads(user, room, count: int = 1, name: str = "pic{}.png") -> list[Attachment]:
    return [attachment_create(room=room, uploader=user, upload=png_upload(name.format(n))) for n in range(count)]


def as_dicts(uploads: list[Attachment]) -> list[dict]:
    return [
        {
            "id": a.pk,
            "name": a.name,
            "size": a.size,
            "content_type": a.content_type,
            "url": f"/api/attachments/{a.pk}/{a.name}",
        }
        for a in uploads
    ]


def unused() -> set[int]:
    return set(Attachment.objects.filter(message__isnull=True).values_list("pk", flat=True))


# --- websocket -------------------------------------------------------------------------


async def test_send_with_attachments_over_the_websocket(ws, alice, bob, lobby, media_root):
    uploads = await database_sync_to_async(make_uploads)(bob, lobby, 3)
    order = [uploads[2], uploads[0], uploads[1]]
    async with ws(bob) as b, ws(alice) as a:
        await b.join("lobby")
        await a.join("lobby")
        # No text at all: a message of files alone.
        await b.send(type="send", room="lobby", body="", client_id="c1", attachments=[u.pk for u in order], ref="r")
        ack = await b.recv_type("ack")
        assert ack["message"]["attachments"] == as_dicts(order)
        assert ack["message"]["body"] == "" and ack["message"]["html"] == ""
        broadcast = await a.recv_type("message")
        assert broadcast["message"]["attachments"] == as_dicts(order)
        assert (await b.recv_type("message"))["message"]["id"] == ack["message"]["id"]

        # A retry of the same client_id answers the original, though its uploads are used now.
        await b.send(type="send", room="lobby", body="", client_id="c1", attachments=[u.pk for u in order])
        again = await b.recv_type("ack")
        assert again["message"]["id"] == ack["message"]["id"]
        assert again["message"]["attachments"] == as_dicts(order)
        await a.nothing()

    stored = await database_sync_to_async(lambda: list(Attachment.objects.order_by("position")))()
    assert [(s.pk, s.position, s.message_id) for s in stored] == [
        (u.pk, i, ack["message"]["id"]) for i, u in enumerate(order)
    ]
    assert await database_sync_to_async(Message.objects.count)() == 1


@pytest.mark.parametrize(
    "case",
    ["someone_elses", "already_used", "another_rooms", "eleven", "twice", "not_ids", "unknown", "no_body_no_files"],
)
async def test_bad_attachments_are_refused_over_the_websocket_and_nothing_is_stored(
    ws, alice, bob, carol, lobby, media_root, case
):
    @database_sync_to_async
    def arrange():
        other_room = RoomFactory(created_by=alice)
        mine = make_uploads(bob, lobby, 11)
        used = make_uploads(bob, lobby, 1)[0]
        message_create(room=lobby, author=bob, body="earlier", attachments=[used.pk])
        return {
            "someone_elses": [make_uploads(carol, lobby)[0].pk],
            "already_used": [mine[0].pk, used.pk],
            "another_rooms": [make_uploads(bob, other_room)[0].pk],
            "eleven": [u.pk for u in mine],
            "twice": [mine[0].pk, mine[0].pk],
            "not_ids": [str(mine[0].pk)],
            "unknown": [10**12],
            "no_body_no_files": [],
        }[case]

    ids = await arrange()
    before = await database_sync_to_async(unused)()
    async with ws(bob) as b:
        await b.join("lobby")
        await b.send(
            type="send",
            room="lobby",
            body="" if case == "no_body_no_files" else "hi",
            client_id="x",
            attachments=ids,
            ref="r",
        )
        error = await b.recv_type("error")
        assert (error["code"], error["ref"], error["room"]) == ("bad_request", "r", "lobby")
        await b.nothing()
    assert await database_sync_to_async(Message.objects.count)() == 1  # "earlier" alone
    assert await database_sync_to_async(unused)() == before


# --- the batch: statements, races ------------------------------------------------------


def test_two_sends_of_one_upload_in_a_batch_one_wins(bob, lobby, media_root):
    (upload,) = make_uploads(bob, lobby)
    results = messages_create(
        requests=[
            NewMessage(room_id=lobby.pk, author=bob, body="first", client_id="a", attachments=[upload.pk]),
            NewMessage(room_id=lobby.pk, author=bob, body="second", client_id="b", attachments=[upload.pk]),
        ]
    )
    assert results[0].created and results[0].data["attachments"][0]["id"] == upload.pk
    assert results[1].error is not None and results[1].error.code == "bad_request"
    assert list(Message.objects.values_list("body", flat=True)) == ["first"]


def test_racing_sends_of_one_upload_from_many_threads_exactly_one_wins(bob, lobby, media_root):
    """Separate transactions (separate connections): the upload row's lock decides."""
    (upload,) = make_uploads(bob, lobby)
    barrier = threading.Barrier(6)
    outcomes: list = []

    def send(n: int) -> None:
        try:
            barrier.wait()
            outcomes.append(
                messages_create(
                    requests=[
                        NewMessage(
                            room_id=lobby.pk, author=bob, body=f"n{n}", client_id=f"c{n}", attachments=[upload.pk]
                        )
                    ]
                )[0]
            )
        finally:
            connections.close_all()

    threads = [threading.Thread(target=send, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(1 for o in outcomes if o.created) == 1
    assert sorted(o.error.code for o in outcomes if o.error is not None) == ["bad_request"] * 5
    assert Message.objects.count() == 1
    assert Attachment.objects.get().message_id == Message.objects.get().pk


def test_an_upload_that_changed_hands_fails_only_its_own_request(bob, carol, lobby, media_root, monkeypatch):
    """Belt and braces: should the guarded UPDATE attach fewer rows than were checked, the batch retries one by one."""
    import messaging.services as services

    good, doomed = make_uploads(bob, lobby, 2)
    Attachment.objects.filter(pk=doomed.pk).update(uploader=carol)
    original = services._lock_uploads
    calls = []

    def stale_lock(cursor, ids):
        found = original(cursor, ids)
        calls.append(ids)
        if len(calls) == 1 and doomed.pk in found:
            # The first read is stale: it still believes bob owns it.
            found[doomed.pk] = found[doomed.pk]._replace(uploader_id=bob.pk)
        return found

    monkeypatch.setattr(services, "_lock_uploads", stale_lock)
    results = messages_create(
        requests=[
            NewMessage(room_id=lobby.pk, author=bob, body="keeps", client_id="k", attachments=[good.pk]),
            NewMessage(room_id=lobby.pk, author=bob, body="loses", client_id="l", attachments=[doomed.pk]),
        ]
    )
    assert len(calls) == 3  # the batch, then each request alone
    assert results[0].created
    assert results[1].error is not None and results[1].error.code == "bad_request"
    assert list(Message.objects.values_list("body", flat=True)) == ["keeps"]
    assert Attachment.objects.get(pk=doomed.pk).message_id is None


# --- REST ------------------------------------------------------------------------------


def test_rest_post_with_attachments(bob, lobby, media_root):
    uploads = make_uploads(bob, lobby, 2)
    client = Api(bob)
    response = client.post(
        "/api/rooms/lobby/messages/", {"client_id": "r1", "attachments": [uploads[1].pk, uploads[0].pk]}
    )
    assert response.status_code == 201, response.content
    assert response.json()["attachments"] == as_dicts([uploads[1], uploads[0]])
    assert response.json()["body"] == ""
    repeat = client.post(
        "/api/rooms/lobby/messages/", {"client_id": "r1", "attachments": [uploads[1].pk, uploads[0].pk]}
    )
    assert repeat.status_code == 200 and repeat.json() == response.json()
    fetched = client.get(f"/api/messages/{response.json()['id']}/").json()
    assert fetched["attachments"] == response.json()["attachments"]


def test_rest_refuses_bad_attachments_and_stores_nothing(alice, bob, carol, lobby, media_root):
    other_room = RoomFactory(created_by=alice)
    mine = make_uploads(bob, lobby, 11)
    theirs = make_uploads(carol, lobby)[0]
    elsewhere = make_uploads(bob, other_room)[0]
    client = Api(bob)
    for ids in (
        [theirs.pk],
        [elsewhere.pk],
        [u.pk for u in mine],
        [mine[0].pk, mine[0].pk],
        ["1"],
        [True],
        "1",
        [0],
        [2**70],
    ):
        assert_error(client.post("/api/rooms/lobby/messages/", {"body": "x", "attachments": ids}), 400, "bad_request")
    assert_error(client.post("/api/rooms/lobby/messages/", {"attachments": []}), 400, "bad_request")
    assert_error(client.post("/api/rooms/lobby/messages/", {}), 400, "bad_request")
    assert Message.objects.count() == 0
    # Used once, then refused.
    assert client.post("/api/rooms/lobby/messages/", {"body": "ok", "attachments": [mine[0].pk]}).status_code == 201
    assert_error(
        client.post("/api/rooms/lobby/messages/", {"body": "x", "attachments": [mine[0].pk]}), 400, "bad_request"
    )
    assert Message.objects.count() == 1


# --- every message dict ------------------------------------------------------------------


def test_history_search_mentions_and_updates_carry_attachments(alice, bob, lobby, media_root, settings):
    uploads = make_uploads(bob, lobby, 2)
    message, _ = message_create(room=lobby, author=bob, body="report for @alice", attachments=[u.pk for u in uploads])
    expected = as_dicts(uploads)
    client = Api(alice)
    assert client.get("/api/rooms/lobby/messages/").json()["results"][0]["attachments"] == expected
    assert client.get("/api/mentions/").json()["results"][0]["attachments"] == expected
    assert client.get("/api/search/", {"q": "report"}).json()["results"][0]["attachments"] == expected
    edited = message_edit(message=message, actor=bob, body="the report for @alice")
    from messaging.serializers import message_to_dict

    assert message_to_dict(edited)["attachments"] == expected
    # Deleted: no files, like no body.
    message_delete(message=message, actor=bob)
    assert client.get("/api/rooms/lobby/messages/").json()["results"][0]["attachments"] == []


def test_history_pages_fetch_attachments_in_one_query(alice, bob, lobby, media_root):
    for n in range(30):
        ids = [u.pk for u in make_uploads(bob, lobby, n % 3)]
        message_create(room=lobby, author=bob, body=f"m{n}", attachments=ids, rate_limit=False)
    client = Api(alice)
    client.get("/api/rooms/lobby/messages/", {"limit": 1})  # authenticate, join
    counts = []
    for limit in (1, 5, 30):
        with CaptureQueriesContext(connection) as ctx:
            page = client.get("/api/rooms/lobby/messages/", {"limit": limit}).json()["results"]
        assert len(page) == limit
        assert sum(len(m["attachments"]) for m in page) > 0
        counts.append(len(ctx.captured_queries))
        assert sum("messaging_attachment" in q["sql"] for q in ctx.captured_queries) == 1
    assert len(set(counts)) == 1, counts


def test_private_room_members_see_files_others_do_not(alice, bob, carol, private_room, media_root):
    Membership.objects.create(room=private_room, user=bob)
    (upload,) = make_uploads(bob, private_room)
    message_create(room=private_room, author=bob, body="", attachments=[upload.pk])
    assert Api(alice).get("/api/rooms/staff/messages/").json()["results"][0]["attachments"] == as_dicts([upload])
    assert_error(Api(carol).get(as_dicts([upload])[0]["url"]), 404, "not_found")


def test_a_message_of_files_only_takes_a_caption_later(bob, lobby, media_root):
    (upload,) = make_uploads(bob, lobby)
    message, _ = message_create(room=lobby, author=bob, body="   ", attachments=[upload.pk])
    assert message.body == ""
    edited = message_edit(message=message, actor=bob, body="caption")
    assert edited.body == "caption"


def test_upload_names_with_odd_characters_have_working_urls(bob, lobby, media_root):
    upload = attachment_create(room=lobby, uploader=bob, upload=SimpleUploadedFile("a b#c?d%e.txt", b"hi"))
    message_create(room=lobby, author=bob, body="odd", attachments=[upload.pk])
    url = Api(bob).get("/api/rooms/lobby/messages/").json()["results"][0]["attachments"][0]["url"]
    assert url == f"/api/attachments/{upload.pk}/a%20b%23c_d%25e.txt"  # "?" is cleaned away
    response = Api(bob).get(url)
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"hi"

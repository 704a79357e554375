"""The websocket contract, through the real ASGI application (router, origin check, auth)."""

import json

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client as DjangoClient

from config.asgi import application
from messaging.models import Message
from rooms.models import Membership, Room
from rooms.services import room_ban, room_update
from tests.factories import PASSWORD, MembershipFactory, RoomFactory
from tests.wsschema import check_server_frame

pytestmark = [pytest.mark.django_db(transaction=True)]


@database_sync_to_async
def count_messages(**filters) -> int:
    return Message.objects.filter(**filters).count()


# --- handshake and authentication ------------------------------------------


async def test_anonymous_socket_is_closed_with_4401_before_any_frame():
    comm = WebsocketCommunicator(application, "/ws/chat/")
    connected, _ = await comm.connect()
    assert connected
    out = await comm.receive_output(timeout=2)
    assert out == {"type": "websocket.close", "code": 4401}


async def test_invalid_token_is_anonymous():
    comm = WebsocketCommunicator(application, "/ws/chat/", headers=[(b"authorization", b"Token nope")])
    await comm.connect()
    assert (await comm.receive_output(timeout=2))["code"] == 4401


async def test_foreign_origin_is_refused(ws, bob):
    from tests.factories import token_for

    key = await database_sync_to_async(token_for)(bob)
    headers = [(b"authorization", f"Token {key}".encode()), (b"origin", b"http://evil.example")]
    comm = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
    connected, _ = await comm.connect()
    assert not connected


async def test_allowed_origin_and_no_origin_are_accepted(ws, bob, lobby):
    async with ws(bob, headers=[(b"origin", b"http://127.0.0.1:8000")]) as b:
        await b.send(type="ping")
        assert (await b.recv())["type"] == "pong"
    async with ws(bob) as b:
        await b.send(type="ping")
        assert (await b.recv())["type"] == "pong"


async def test_session_cookie_authenticates(bob, lobby):
    def login_cookie() -> str:
        client = DjangoClient()
        assert client.login(username="bob", password=PASSWORD)
        return client.cookies["sessionid"].value

    sessionid = await database_sync_to_async(login_cookie)()
    comm = WebsocketCommunicator(application, "/ws/chat/", headers=[(b"cookie", f"sessionid={sessionid}".encode())])
    assert (await comm.connect())[0]
    await comm.send_to(text_data=json.dumps({"type": "join", "room": "lobby"}))
    joined = check_server_frame(await comm.receive_from(timeout=3))
    assert joined["type"] == "joined" and joined["room"] == "lobby"
    await comm.disconnect()


async def test_deactivated_user_sockets_close_with_4403(ws, bob, lobby):
    async with ws(bob) as b:
        await b.join("lobby")

        def deactivate():
            bob.is_active = False
            bob.save()

        await database_sync_to_async(deactivate)()
        out = await b.comm.receive_output(timeout=3)
        while out["type"] != "websocket.close":
            check_server_frame(out["text"])
            out = await b.comm.receive_output(timeout=3)
        assert out["code"] == 4403


# --- rooms, joining, chatting -------------------------------------------------


async def test_two_users_in_a_room_see_each_other_and_a_third_elsewhere_sees_nothing(ws, alice, bob, carol, lobby):
    await database_sync_to_async(RoomFactory)(slug="random", created_by=alice)
    async with ws(alice) as a, ws(bob) as b, ws(carol) as c:
        assert (await a.join("lobby"))["last_seq"] == 0
        await b.join("lobby")
        await c.join("random")
        await a.send(type="send", room="lobby", body="  hi bob \n", client_id="c1", ref="r1")
        ack = await a.recv_type("ack")
        assert ack["ref"] == "r1"
        assert ack["message"]["body"] == "hi bob"
        assert ack["message"]["seq"] == 1
        assert ack["message"]["client_id"] == "c1"
        assert ack["message"]["author"] == {"id": alice.pk, "username": "alice", "display_name": "Alice"}
        assert ack["message"]["room"] == "lobby"
        assert ack["message"]["deleted"] is False and ack["message"]["edited_at"] is None
        to_bob = await b.recv_type("message")
        assert to_bob["message"]["body"] == "hi bob"
        assert to_bob["message"]["client_id"] is None  # shown to its author only
        to_alice = await a.recv_type("message")
        assert to_alice["message"]["id"] == ack["message"]["id"]
        assert to_alice["message"]["client_id"] == "c1"
        await b.send(type="send", room="lobby", body="hello alice", client_id="b1")
        assert (await b.recv_type("ack"))["message"]["seq"] == 2
        assert (await a.recv_type("message"))["message"]["body"] == "hello alice"
        await c.nothing()


async def test_path_with_slug_joins_on_connect(ws, bob, lobby):
    async with ws(bob, path="/ws/chat/lobby/") as b:
        joined = await b.recv_type("joined")
        assert joined["room"] == "lobby" and joined["last_seq"] == 0
        assert {"id": bob.pk, "username": "bob", "display_name": "Bob"} in joined["online"]


async def test_joining_a_public_room_makes_a_member_with_marker_at_last_seq(ws, alice, bob, lobby):
    from messaging.services import message_create

    await database_sync_to_async(message_create)(room=lobby, author=alice, body="before", client_id="x")
    async with ws(bob) as b:
        assert (await b.join("lobby"))["last_seq"] == 1
    membership = await database_sync_to_async(Membership.objects.get)(room=lobby, user=bob)
    assert membership.role == "member" and membership.last_read_seq == 1


async def test_unknown_and_foreign_private_rooms_are_not_found(ws, bob, private_room):
    async with ws(bob) as b:
        for room in ("nope", "staff", "Bad Slug!"):
            await b.send(type="join", room=room, ref="j")
            err = await b.recv()
            assert err == {"type": "error", "ref": "j", "room": room, "code": "not_found", "detail": err["detail"]}
        await b.send(type="send", room="staff", body="x", client_id="1")
        assert (await b.recv())["code"] == "not_joined"


async def test_private_room_member_can_join_and_chat(ws, alice, bob, private_room):
    await database_sync_to_async(MembershipFactory)(room=private_room, user=bob)
    async with ws(bob) as b:
        await b.join("staff")
        await b.send(type="send", room="staff", body="psst", client_id="p1")
        assert (await b.recv_type("ack"))["message"]["seq"] == 1


async def test_leave_stops_delivery(ws, alice, bob, lobby):
    async with ws(alice) as a, ws(bob) as b:
        await a.join("lobby")
        await b.join("lobby")
        await b.send(type="leave", room="lobby", ref="l")
        assert await b.recv_type("left") == {"type": "left", "room": "lobby", "ref": "l"}
        await a.send(type="send", room="lobby", body="anyone?", client_id="1")
        await a.recv_type("ack")
        await b.nothing()
        await b.send(type="leave", room="lobby")
        assert (await b.recv())["code"] == "not_joined"


async def test_typing_reaches_others_not_the_senders_own_sockets(ws, alice, bob, lobby):
    async with ws(alice) as a1, ws(alice) as a2, ws(bob) as b:
        for client in (a1, a2, b):
            await client.join("lobby")
        await a1.send(type="typing", room="lobby")
        typing = await b.recv_type("typing")
        assert typing == {
            "type": "typing",
            "room": "lobby",
            "user": {"id": alice.pk, "username": "alice", "display_name": "Alice"},
        }
        await a1.nothing()
        await a2.nothing()


async def test_read_moves_the_marker_forward_only_and_caps_at_last_seq(ws, alice, bob, lobby):
    from messaging.services import message_create

    for i in range(3):
        await database_sync_to_async(message_create)(room=lobby, author=alice, body=f"m{i}", client_id=str(i))
    async with ws(bob) as b:
        await b.join("lobby", after=0)
        await b.send(type="read", room="lobby", seq=99)
        await b.send(type="read", room="lobby", seq=1)
        await b.send(type="ping", ref="sync")
        await b.recv_type("pong")
        await b.nothing()
    membership = await database_sync_to_async(Membership.objects.get)(room=lobby, user=bob)
    assert membership.last_read_seq == 3


async def test_sending_marks_the_room_read_for_its_author(ws, alice, lobby):
    async with ws(alice) as a:
        await a.join("lobby")
        await a.send(type="send", room="lobby", body="x", client_id="1")
        await a.recv_type("ack")
    membership = await database_sync_to_async(Membership.objects.get)(room=lobby, user=alice)
    assert membership.last_read_seq == 1


async def test_ping_pong_echoes_ref(ws, bob):
    async with ws(bob) as b:
        await b.send(type="ping", ref="abc")
        assert await b.recv() == {"type": "pong", "ref": "abc"}


async def test_retry_with_same_client_id_returns_original_and_broadcasts_nothing(ws, alice, bob, lobby):
    async with ws(alice) as a, ws(bob) as b:
        await a.join("lobby")
        await b.join("lobby")
        await a.send(type="send", room="lobby", body="once", client_id="same")
        first = (await a.recv_type("ack"))["message"]
        await b.recv_type("message")
        await a.send(type="send", room="lobby", body="once again", client_id="same")
        second = (await a.recv_type("ack"))["message"]
        assert (second["id"], second["seq"], second["body"]) == (first["id"], first["seq"], "once")
        await b.nothing()
    assert await count_messages(room=lobby) == 1


async def test_locked_room_refuses_messages(ws, alice, bob, lobby):
    async with ws(bob) as b:
        await b.join("lobby")
        await database_sync_to_async(room_update)(room=lobby, actor=alice, is_locked=True)
        updated = await b.recv_type("room_updated")
        assert updated["room"]["slug"] == "lobby" and updated["room"]["is_locked"] is True
        await b.send(type="send", room="lobby", body="x", client_id="1", ref="s")
        err = await b.recv_type("error")
        assert (err["code"], err["room"], err["ref"]) == ("room_locked", "lobby", "s")
    assert await count_messages(room=lobby) == 0


async def test_ban_cuts_the_socket_off_that_room_only(ws, alice, bob, lobby):
    await database_sync_to_async(RoomFactory)(slug="random", created_by=alice)
    async with ws(alice) as a, ws(bob) as b:
        await a.join("lobby")
        await b.join("lobby")
        await b.join("random")
        await database_sync_to_async(room_ban)(room=lobby, actor=alice, user=bob)
        err = await b.recv_type("error")
        assert (err["code"], err["room"]) == ("forbidden", "lobby")
        await a.send(type="send", room="lobby", body="bob can't see this", client_id="1")
        await a.recv_type("ack")
        await b.send(type="send", room="random", body="still here", client_id="2")
        assert (await b.recv_type("ack"))["message"]["room"] == "random"
        await b.send(type="join", room="lobby")
        assert (await b.recv_type("error"))["code"] == "forbidden"
        await b.send(type="send", room="lobby", body="x", client_id="3")
        assert (await b.recv_type("error"))["code"] == "not_joined"
        await b.nothing(ignore=("presence", "message"))


async def test_edit_and_delete_reach_sockets_as_whole_messages(ws, alice, bob, lobby):
    from messaging.services import message_create, message_delete, message_edit

    async with ws(bob) as b:
        await b.join("lobby")
        message, _ = await database_sync_to_async(message_create)(room=lobby, author=alice, body="typo", client_id="1")
        await b.recv_type("message")
        await database_sync_to_async(message_edit)(message=message, actor=alice, body="fixed")
        updated = await b.recv_type("message_updated")
        assert updated["message"]["body"] == "fixed" and updated["message"]["edited_at"] is not None
        assert updated["message"]["client_id"] is None
        await database_sync_to_async(message_delete)(message=message, actor=alice)
        deleted = await b.recv_type("message_deleted")
        assert deleted["message"]["deleted"] is True and deleted["message"]["body"] == ""
        assert deleted["message"]["seq"] == 1


async def test_presence_online_on_first_join_offline_on_last_leave(ws, alice, bob, lobby):
    async with ws(alice) as a:
        joined = await a.join("lobby")
        assert [u["username"] for u in joined["online"]] == ["alice"]
        async with ws(bob) as b1:
            async with ws(bob) as b2:
                await b1.join("lobby")
                online = await a.recv_type("presence")
                assert (online["user"]["username"], online["online"]) == ("bob", True)
                await b2.join("lobby")
            await a.nothing(timeout=0.3, ignore=())  # bob still has a socket: no presence change
        offline = await a.recv_type("presence")
        assert (offline["user"]["username"], offline["online"]) == ("bob", False)


# --- bad input: an error frame, the socket stays open, nothing stored -------


BAD_FRAMES = [
    ("not json", "bad_request"),
    # The json module raises RecursionError, not ValueError, on this.
    pytest.param("[" * 10_000 + "]" * 10_000, "bad_request", id="10000-nested-brackets"),
    pytest.param('{"type": "ping", "ref": ' + "[" * 10_000 + "]" * 10_000 + "}", "bad_request", id="nested-ref"),
    ("[1, 2]", "bad_request"),
    ('"text"', "bad_request"),
    ("{}", "bad_request"),
    ('{"type": "dance"}', "bad_request"),
    ('{"type": 5}', "bad_request"),
    ('{"type": "join"}', "bad_request"),
    ('{"type": "join", "room": 7}', "bad_request"),
    ('{"type": "join", "room": "lobby", "after": "x"}', "bad_request"),
    ('{"type": "join", "room": "lobby", "after": -1}', "bad_request"),
    ('{"type": "ping", "ref": 5}', "bad_request"),
    ('{"type": "ping", "ref": ""}', "bad_request"),
]


@pytest.mark.parametrize(("raw", "code"), BAD_FRAMES)
async def test_malformed_frames_get_an_error_and_the_socket_stays_open(ws, bob, lobby, raw, code):
    async with ws(bob) as b:
        await b.comm.send_to(text_data=raw)
        err = await b.recv()
        assert err["type"] == "error" and err["code"] == code and err["detail"]
        await b.send(type="ping")
        assert (await b.recv())["type"] == "pong"


SEND_CASES = [
    ({"body": "x"}, "bad_request"),  # client_id is required
    ({"body": "x", "client_id": 5}, "bad_request"),
    ({"body": "x", "client_id": ""}, "bad_request"),
    ({"body": "x", "client_id": "c" * 65}, "bad_request"),
    ({"body": 12, "client_id": "1"}, "bad_request"),
    ({"client_id": "1"}, "bad_request"),
    ({"body": "   \n\t ", "client_id": "1"}, "bad_request"),
    ({"body": "é" * 4001, "client_id": "1"}, "too_long"),
    ({"body": "😀" * 4001, "client_id": "1"}, "too_long"),
]


@pytest.mark.parametrize(("fields", "code"), SEND_CASES)
async def test_bad_sends_store_nothing(ws, bob, lobby, fields, code):
    async with ws(bob) as b:
        await b.join("lobby")
        await b.send(type="send", room="lobby", ref="s", **fields)
        err = await b.recv_type("error")
        assert (err["code"], err["room"], err["ref"]) == (code, "lobby", "s")
        await b.send(type="ping")
        assert (await b.recv_type("pong"))["type"] == "pong"
    assert await count_messages() == 0


async def test_limits_are_code_points_after_trimming(ws, bob, lobby):
    async with ws(bob) as b:
        await b.join("lobby")
        await b.send(type="send", room="lobby", body="  " + "😀" * 4000 + "  ", client_id="max")
        ack = await b.recv_type("ack")
        assert ack["message"]["body"] == "😀" * 4000


async def test_oversized_frame_closes_with_1009(ws, bob, lobby):
    async with ws(bob) as b:
        await b.join("lobby")
        await b.comm.send_to(
            text_data=json.dumps({"type": "send", "room": "lobby", "body": "x" * 70000, "client_id": "1"})
        )
        out = await b.comm.receive_output(timeout=3)
        assert out == {"type": "websocket.close", "code": 1009}
    assert await count_messages() == 0


async def test_rate_limit_then_flood_close(ws, bob, lobby, settings):
    settings.CHAT_RATE_LIMIT = "2/60"
    async with ws(bob) as b:
        await b.join("lobby")
        for i in range(2):
            await b.send(type="send", room="lobby", body="ok", client_id=f"ok{i}")
            await b.recv_type("ack")
        await b.send(type="send", room="lobby", body="too fast", client_id="x0", ref="r")
        err = await b.recv_type("error")
        assert err["code"] == "rate_limited" and 1 <= err["retry_after"] <= 60 and err["ref"] == "r"
        # Ten rate_limited errors in a row are tolerated; the eleventh closes.
        for i in range(1, 10):
            await b.send(type="send", room="lobby", body="too fast", client_id=f"x{i}")
            assert (await b.recv_type("error"))["code"] == "rate_limited"
        await b.send(type="send", room="lobby", body="too fast", client_id="x10")
        out = await b.comm.receive_output(timeout=3)
        while out["type"] != "websocket.close":
            out = await b.comm.receive_output(timeout=3)
        assert out["code"] == 4429
    assert await count_messages() == 2


async def test_idempotent_retry_is_not_rate_limited(ws, bob, lobby, settings):
    settings.CHAT_RATE_LIMIT = "1/60"
    async with ws(bob) as b:
        await b.join("lobby")
        await b.send(type="send", room="lobby", body="x", client_id="same")
        first = await b.recv_type("ack")
        await b.send(type="send", room="lobby", body="x", client_id="same")
        assert (await b.recv_type("ack"))["message"]["id"] == first["message"]["id"]


async def test_unknown_user_in_room_row_is_room_scoped(ws, bob):
    """A room created after the socket opened can be joined without reconnecting."""
    async with ws(bob) as b:
        await database_sync_to_async(RoomFactory)(slug="fresh")
        assert (await b.join("fresh"))["room"] == "fresh"
        assert await database_sync_to_async(Room.objects.filter(slug="fresh").count)() == 1


@pytest.mark.redis
async def test_channels_redis_layer_carries_messages(ws, alice, bob, lobby):
    from channels.layers import get_channel_layer
    from channels_redis.core import RedisChannelLayer
    from channels_redis.pubsub import RedisPubSubChannelLayer

    assert isinstance(get_channel_layer(), RedisChannelLayer | RedisPubSubChannelLayer)
    async with ws(alice) as a, ws(bob) as b:
        await a.join("lobby")
        await b.join("lobby")
        await a.send(type="send", room="lobby", body="through redis", client_id="r1")
        assert (await b.recv_type("message"))["message"]["body"] == "through redis"


async def test_leaving_over_rest_unsubscribes_every_socket_of_the_user(ws, alice, bob, lobby):
    from rooms.services import room_leave

    async with ws(alice) as a, ws(bob) as b:
        await a.join("lobby")
        await b.join("lobby")
        await database_sync_to_async(room_leave)(room=lobby, user=bob)
        assert await b.recv_type("left") == {"type": "left", "room": "lobby"}
        await a.send(type="send", room="lobby", body="gone?", client_id="1")
        await a.recv_type("ack")
        await b.nothing()


async def test_an_unexpected_failure_is_an_error_frame_not_a_close(ws, bob, lobby, monkeypatch):
    from messaging import db

    async def boom(**kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(db, "mark_read", boom)
    async with ws(bob) as b:
        await b.join("lobby")
        await b.send(type="read", room="lobby", seq=1, ref="r")
        err = await b.recv_type("error")
        assert (err["code"], err["ref"]) == ("unavailable", "r")
        await b.send(type="ping")
        assert (await b.recv_type("pong"))["type"] == "pong"


async def test_rejoin_with_after_replays_what_the_client_asks_for(ws, alice, lobby):
    async with ws(alice) as a:
        await a.join("lobby")
        for i in range(3):
            await a.send(type="send", room="lobby", body=f"m{i}", client_id=str(i))
        frames = [await a.recv() for _ in range(6)]
        assert sorted(f["type"] for f in frames) == ["ack"] * 3 + ["message"] * 3
        await a.send(type="join", room="lobby", after=1, ref="again")
        replayed = [await a.recv() for _ in range(3)]
        assert [f["message"]["seq"] for f in replayed[:2]] == [2, 3]
        joined = replayed[2]
        assert (joined["type"], joined["last_seq"], joined["recovered"], joined["ref"]) == ("joined", 3, True, "again")
        await a.send(type="send", room="lobby", body="live", client_id="live")
        assert (await a.recv_type("message"))["message"]["seq"] == 4


async def test_huge_integers_are_answered_not_refused(ws, bob, lobby):
    async with ws(bob) as b:
        await b.comm.send_to(text_data='{"type": "join", "room": "lobby", "after": 1000000000000000000000000000000}')
        joined = await b.recv_type("joined")
        assert joined["recovered"] is True and joined["last_seq"] == 0
        await b.comm.send_to(text_data='{"type": "read", "room": "lobby", "seq": 1000000000000000000000000000000}')
        await b.send(type="ping")
        assert (await b.recv_type("pong"))["type"] == "pong"


async def test_unknown_websocket_paths_are_refused_not_errors(bob):
    from tests.factories import token_for

    key = await database_sync_to_async(token_for)(bob)
    for path in ("/ws/chat", "/ws/other/", "/ws/chat/lobby/extra/"):
        comm = WebsocketCommunicator(application, path, headers=[(b"authorization", f"Token {key}".encode())])
        connected, _ = await comm.connect()
        assert not connected


async def test_presence_of_a_deactivated_user_names_them(ws, alice, bob, lobby):
    async with ws(alice) as a, ws(bob) as b:
        await a.join("lobby")
        await b.join("lobby")
        await a.recv_type("presence")

        def deactivate():
            bob.is_active = False
            bob.save()

        await database_sync_to_async(deactivate)()
        offline = await a.recv_type("presence")
        assert offline["online"] is False
        assert offline["user"] == {"id": bob.pk, "username": "bob", "display_name": "Bob"}


@pytest.mark.redis
async def test_an_idle_socket_survives_longer_than_redis_read_timeouts(ws, alice, bob, lobby):
    """channels-redis blocks 5 s per receive; a client timeout at 5 s killed idle sockets."""
    import asyncio

    async with ws(alice) as a, ws(bob) as b:
        await a.join("lobby")
        await b.join("lobby")
        await asyncio.sleep(12)
        await a.send(type="send", room="lobby", body="still there?", client_id="idle")
        assert (await b.recv_type("message", timeout=5))["message"]["body"] == "still there?"

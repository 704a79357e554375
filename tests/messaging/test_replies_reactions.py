"""Replies and reactions (issue 8, parts 2 and 3): services and the websocket."""

import asyncio
import threading

import pytest
from channels.db import database_sync_to_async
from django.db import close_old_connections

from messaging.models import Message, Reaction
from messaging.selectors import reactions_for
from messaging.services import MAX_REACTIONS, clean_emoji, message_create, message_delete, message_edit, reaction_set
from rooms.models import Ban, Room
from tests.factories import MessageFactory, RoomFactory, UserFactory

EMOJI = [
    "👍",
    "❤️",
    "😂",
    "🎉",
    "👀",
    "🚀",
    "🙏",
    "🔥",
    "✅",
    "😮",
    "😢",
    "🤔",
    "👏",
    "💯",
    "🙌",
    "😅",
    "🥳",
    "🤝",
    "👌",
    "🍕",
    "🌈",
]
NOT_EMOJI = ["a", ":)", "👍👍", "", " 👍", "❤", "🏽", "👍 ", "1", "#", None, 5, ["👍"]]


# --- the emoji check --------------------------------------------------------------


@pytest.mark.parametrize("value", ["👍", "👍🏽", "❤️", "👨‍👩‍👧", "🇫🇷", "#️⃣", "🏳️‍🌈"])
def test_one_fully_qualified_emoji_passes(value):
    assert clean_emoji(value) == value


@pytest.mark.parametrize("value", NOT_EMOJI)
def test_anything_else_is_bad_request(value):
    from common.errors import BadRequest

    with pytest.raises(BadRequest):
        clean_emoji(value)


# --- services -------------------------------------------------------------------


@pytest.mark.django_db
def test_reply_quotes_the_original_as_it_is_now(alice, bob, lobby):
    original, _ = message_create(room=lobby, author=alice, body="x" * 300)
    reply, _ = message_create(room=lobby, author=bob, body="yes", reply_to=original.pk)
    quote = {
        "id": original.pk,
        "seq": 1,
        "author": {"id": alice.pk, "username": "alice", "display_name": "Alice"},
        "body": "x" * 200,
        "deleted": False,
    }
    from messaging.serializers import message_to_dict

    assert message_to_dict(reply)["reply_to"] == quote
    assert Message.objects.get(pk=reply.pk).reply_to_id == original.pk
    message_edit(message=original, actor=alice, body="edited")
    assert message_to_dict(Message.objects.get(pk=reply.pk))["reply_to"]["body"] == "edited"
    message_delete(message=original, actor=alice)
    assert message_to_dict(Message.objects.get(pk=reply.pk))["reply_to"] == quote | {"body": "", "deleted": True}


@pytest.mark.django_db
@pytest.mark.parametrize("bad", ["other-room", "unknown"])
def test_reply_to_another_rooms_message_or_an_unknown_one_is_not_found(alice, lobby, bad):
    from common.errors import NotFound

    other = MessageFactory(room=RoomFactory(created_by=alice), author=alice)
    target = other.pk if bad == "other-room" else other.pk + 1000
    with pytest.raises(NotFound):
        message_create(room=lobby, author=alice, body="hi", reply_to=target)
    assert Message.objects.count() == 1
    assert Room.objects.get(pk=lobby.pk).last_seq == 0


@pytest.mark.django_db
@pytest.mark.parametrize("bad", ["1", 0, -3, True, 1.5, {"id": 1}])
def test_reply_to_of_the_wrong_type_is_bad_request(alice, lobby, bad):
    from common.errors import BadRequest

    with pytest.raises(BadRequest):
        message_create(room=lobby, author=alice, body="hi", reply_to=bad)
    assert not Message.objects.exists()


@pytest.mark.django_db
def test_reactions_count_once_in_order_of_first_use_with_me(alice, bob, carol, lobby):
    message, _ = message_create(room=lobby, author=alice, body="hi")
    reaction_set(user=bob, message_id=message.pk, emoji="👍", on=True)
    reaction_set(user=bob, message_id=message.pk, emoji="👍", on=True)  # twice counts once
    reaction_set(user=carol, message_id=message.pk, emoji="🎉", on=True)
    reaction_set(user=carol, message_id=message.pk, emoji="👍", on=True)
    reaction_set(user=alice, message_id=message.pk, emoji="👀", on=False)  # not there: a no-op
    assert reactions_for(message_ids=[message.pk], viewer_id=bob.pk)[message.pk] == [
        {"emoji": "👍", "count": 2, "me": True},
        {"emoji": "🎉", "count": 1, "me": False},
    ]
    reaction_set(user=bob, message_id=message.pk, emoji="👍", on=False)
    assert reactions_for(message_ids=[message.pk], viewer_id=None)[message.pk] == [
        {"emoji": "👍", "count": 1, "me": False},
        {"emoji": "🎉", "count": 1, "me": False},
    ]
    assert Reaction.objects.count() == 2


@pytest.mark.django_db
def test_at_most_twenty_distinct_emoji(alice, bob, lobby):
    from common.errors import BadRequest

    message, _ = message_create(room=lobby, author=alice, body="hi")
    for emoji in EMOJI[:MAX_REACTIONS]:
        reaction_set(user=alice, message_id=message.pk, emoji=emoji, on=True)
    with pytest.raises(BadRequest):
        reaction_set(user=bob, message_id=message.pk, emoji=EMOJI[MAX_REACTIONS], on=True)
    # One of the twenty is still fine for anyone.
    reaction_set(user=bob, message_id=message.pk, emoji=EMOJI[0], on=True)
    assert Reaction.objects.filter(message=message).values("emoji").distinct().count() == MAX_REACTIONS
    assert not Reaction.objects.filter(emoji=EMOJI[MAX_REACTIONS]).exists()


@pytest.mark.django_db
def test_who_may_react(alice, bob, carol, lobby, private_room):
    from common.errors import BadRequest, Forbidden, NotFound, RoomLocked

    message, _ = message_create(room=lobby, author=alice, body="hi")
    secret, _ = message_create(room=private_room, author=alice, body="psst")
    with pytest.raises(NotFound):
        reaction_set(user=bob, message_id=secret.pk, emoji="👍", on=True)
    with pytest.raises(NotFound):
        reaction_set(user=bob, message_id=secret.pk + 1000, emoji="👍", on=True)
    with pytest.raises(NotFound):  # the websocket's room must be the message's
        reaction_set(user=alice, message_id=secret.pk, emoji="👍", on=True, room_id=lobby.pk)
    Ban.objects.create(room=lobby, user=carol)
    with pytest.raises(Forbidden):
        reaction_set(user=carol, message_id=message.pk, emoji="👍", on=True)
    with pytest.raises(BadRequest):
        reaction_set(user=bob, message_id=message.pk, emoji="👍", on="yes")
    Room.objects.filter(pk=lobby.pk).update(is_locked=True)
    with pytest.raises(RoomLocked):
        reaction_set(user=bob, message_id=message.pk, emoji="👍", on=True)
    Room.objects.filter(pk=lobby.pk).update(is_locked=False)
    message_delete(message=message, actor=alice)
    with pytest.raises(BadRequest):
        reaction_set(user=bob, message_id=message.pk, emoji="👍", on=True)
    assert not Reaction.objects.exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_toggles_keep_counts_right(alice, lobby):
    """Threads (each its own connection, as separate processes would be) toggle the same emoji."""
    message, _ = message_create(room=lobby, author=alice, body="hi")
    users = [UserFactory() for _ in range(8)]
    barrier = threading.Barrier(len(users))
    counts: list[int] = []
    errors: list[BaseException] = []

    def toggle(user) -> None:
        try:
            barrier.wait()
            for i in range(6):
                reaction_set(user=user, message_id=message.pk, emoji="👍", on=i % 2 == 0)
                reaction_set(user=user, message_id=message.pk, emoji="🎉", on=True)
            reaction_set(user=user, message_id=message.pk, emoji="👍", on=True)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=toggle, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    del counts
    rows = reactions_for(message_ids=[message.pk], viewer_id=None)[message.pk]
    assert {r["emoji"]: r["count"] for r in rows} == {"👍": len(users), "🎉": len(users)}
    assert Reaction.objects.filter(message=message).count() == 2 * len(users)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_new_emoji_never_exceed_twenty(alice, lobby):
    message, _ = message_create(room=lobby, author=alice, body="hi")
    for emoji in EMOJI[: MAX_REACTIONS - 2]:
        reaction_set(user=alice, message_id=message.pk, emoji=emoji, on=True)
    users = [UserFactory() for _ in range(6)]
    barrier = threading.Barrier(len(users))

    def add(user, emoji) -> None:
        barrier.wait()
        try:
            reaction_set(user=user, message_id=message.pk, emoji=emoji, on=True)
        except Exception:
            pass
        finally:
            close_old_connections()

    fresh = ["🦄", "🐙", "🦊", "🐝", "🦉", "🐢"]
    threads = [threading.Thread(target=add, args=(u, e)) for u, e in zip(users, fresh, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Reaction.objects.filter(message=message).values("emoji").distinct().count() == MAX_REACTIONS


# --- websocket ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_send_a_reply_over_the_websocket(ws, alice, bob, lobby):
    original = await database_sync_to_async(MessageFactory)(room=lobby, author=alice, body="question?")
    async with ws(alice) as a, ws(bob) as b:
        await a.join("lobby")
        await b.join("lobby")
        await b.send(type="send", room="lobby", body="answer", client_id="r1", ref="x", reply_to=original.pk)
        ack = await b.recv_type("ack")
        quote = {
            "id": original.pk,
            "seq": 1,
            "author": {"id": alice.pk, "username": "alice", "display_name": "Alice"},
            "body": "question?",
            "deleted": False,
        }
        assert ack["message"]["reply_to"] == quote and ack["message"]["reactions"] == []
        event = await a.recv_type("message")
        assert event["message"]["reply_to"] == quote and event["message"]["id"] == ack["message"]["id"]
        # A retry answers the stored message, quote included.
        await b.send(type="send", room="lobby", body="answer", client_id="r1", reply_to=original.pk)
        assert (await b.recv_type("ack"))["message"]["reply_to"] == quote
        # Deleting the original: its event, and the quote in history, show it deleted.
        await database_sync_to_async(message_delete)(message=original, actor=alice)
        deleted = await a.recv_type("message_deleted")
        assert deleted["message"]["deleted"] and deleted["message"]["reply_to"] is None
        await a.nothing(ignore=("presence", "message"))


@pytest.mark.django_db(transaction=True)
async def test_bad_replies_over_the_websocket_store_nothing(ws, alice, bob, lobby):
    other_room = await database_sync_to_async(RoomFactory)(created_by=alice)
    elsewhere = await database_sync_to_async(MessageFactory)(room=other_room, author=alice)
    async with ws(bob) as b:
        await b.join("lobby")
        for n, (reply_to, code) in enumerate(
            [(elsewhere.pk, "not_found"), (elsewhere.pk + 999, "not_found"), ("1", "bad_request"), (-1, "bad_request")]
        ):
            await b.send(type="send", room="lobby", body="hi", client_id=f"c{n}", ref=f"r{n}", reply_to=reply_to)
            error = await b.recv_type("error")
            assert (error["code"], error["ref"], error["room"]) == (code, f"r{n}", "lobby")
    assert await database_sync_to_async(Message.objects.filter(room=lobby).count)() == 0


@pytest.mark.django_db(transaction=True)
async def test_react_over_the_websocket_reaches_everyone(ws, alice, bob, lobby):
    message = await database_sync_to_async(MessageFactory)(room=lobby, author=alice, body="hi")
    async with ws(alice) as a, ws(bob) as b:
        await a.join("lobby")
        await b.join("lobby")
        await b.send(type="react", room="lobby", message_id=message.pk, emoji="👍", on=True, ref="r")
        expected = {
            "type": "reaction",
            "room": "lobby",
            "message_id": message.pk,
            "emoji": "👍",
            "user": {"id": bob.pk, "username": "bob", "display_name": "Bob"},
            "on": True,
            "count": 1,
        }
        assert await a.recv_type("reaction") == expected
        assert await b.recv_type("reaction") == expected  # the reactor's own socket too, and no other reply
        # Adding twice: no change, no event.
        await b.send(type="react", room="lobby", message_id=message.pk, emoji="👍", on=True)
        await a.send(type="react", room="lobby", message_id=message.pk, emoji="👍", on=True)
        assert (await b.recv_type("reaction"))["count"] == 2
        assert (await a.recv_type("reaction"))["user"]["id"] == alice.pk
        await b.send(type="react", room="lobby", message_id=message.pk, emoji="👍", on=False)
        off = await a.recv_type("reaction")
        assert (off["on"], off["count"], off["user"]["id"]) == (False, 1, bob.pk)
        await b.nothing(ignore=("presence", "reaction"))
        # History on join (replay) carries reactions with `me` for the viewer.
    async with ws(alice) as a2:
        await a2.send(type="join", room="lobby", after=0)
        replayed = await a2.recv_type("message")
        assert replayed["message"]["reactions"] == [{"emoji": "👍", "count": 1, "me": True}]


@pytest.mark.django_db(transaction=True)
async def test_bad_reactions_over_the_websocket_store_nothing(ws, alice, bob, lobby):
    message = await database_sync_to_async(MessageFactory)(room=lobby, author=alice, body="hi")
    elsewhere = await database_sync_to_async(MessageFactory)(
        room=await database_sync_to_async(RoomFactory)(created_by=alice)
    )
    full = await database_sync_to_async(MessageFactory)(room=lobby, author=alice, body="popular")

    def fill() -> None:
        for emoji in EMOJI[:MAX_REACTIONS]:
            reaction_set(user=alice, message_id=full.pk, emoji=emoji, on=True)

    await database_sync_to_async(fill)()
    async with ws(bob) as b:
        await b.send(type="react", room="lobby", message_id=message.pk, emoji="👍", on=True, ref="j")
        assert (await b.recv_type("error"))["code"] == "not_joined"
        await b.join("lobby")
        cases = [
            ({"message_id": message.pk, "emoji": "a", "on": True}, "bad_request"),
            ({"message_id": message.pk, "emoji": ":)", "on": True}, "bad_request"),
            ({"message_id": message.pk, "emoji": "👍👍", "on": True}, "bad_request"),
            ({"message_id": message.pk, "emoji": "👍", "on": "yes"}, "bad_request"),
            ({"message_id": "1", "emoji": "👍", "on": True}, "bad_request"),
            ({"message_id": elsewhere.pk, "emoji": "👍", "on": True}, "not_found"),
            ({"message_id": elsewhere.pk + 999, "emoji": "👍", "on": True}, "not_found"),
            ({"message_id": full.pk, "emoji": EMOJI[MAX_REACTIONS], "on": True}, "bad_request"),
        ]
        for n, (fields, code) in enumerate(cases):
            await b.send(type="react", room="lobby", ref=f"r{n}", **fields)
            error = await b.recv_type("error")
            assert (error["code"], error["ref"], error["room"]) == (code, f"r{n}", "lobby"), fields
        await b.nothing(ignore=("presence",))
    count = await database_sync_to_async(Reaction.objects.exclude(message=full).count)()
    assert count == 0
    assert await database_sync_to_async(Reaction.objects.filter(message=full).count)() == MAX_REACTIONS


@pytest.mark.django_db(transaction=True)
async def test_updates_carry_reactions_with_me_false(ws, alice, bob, lobby):
    message = await database_sync_to_async(MessageFactory)(room=lobby, author=alice, body="hi")
    await database_sync_to_async(reaction_set)(user=alice, message_id=message.pk, emoji="🎉", on=True)
    async with ws(alice) as a:
        await a.join("lobby")
        await database_sync_to_async(message_edit)(message=message, actor=alice, body="hello")
        updated = await a.recv_type("message_updated")
        assert updated["message"]["reactions"] == [{"emoji": "🎉", "count": 1, "me": False}]
        assert updated["message"]["reply_to"] is None
    await asyncio.sleep(0)


@pytest.mark.django_db
def test_admin_shows_the_reply_and_the_reactions(client, alice, bob, lobby):
    original, _ = message_create(room=lobby, author=bob, body="the original")
    reply, _ = message_create(room=lobby, author=alice, body="a reply", reply_to=original.pk)
    reaction_set(user=bob, message_id=reply.pk, emoji="🎉", on=True)
    reaction_set(user=alice, message_id=reply.pk, emoji="🎉", on=True)
    client.force_login(alice)
    page = client.get(f"/admin/messaging/message/{reply.pk}/change/").content.decode()
    assert f"/admin/messaging/message/{original.pk}/change/" in page and "the original" in page
    assert "🎉 2: bob, alice" in page

"""Mentions: parsed on send and edit, who can be mentioned, and the live `mention` event on every socket."""

import pytest
from channels.db import database_sync_to_async

from messaging.mentions import choose_mentions, lookup_names, mention_tokens, token_candidates
from messaging.models import Mention, Message
from messaging.serializers import message_to_dict
from messaging.services import NewMessage, message_create, message_delete, message_edit, messages_create
from rooms.models import Membership
from rooms.services import room_ban
from tests.factories import UserFactory


def names(data: dict) -> list[str]:
    return [user["username"] for user in data["mentions"]]


# --- parsing (pure) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "tokens"),
    [
        ("@bob hi", ["bob"]),
        ("hi @bob, and (@carol)!", ["bob", "carol"]),
        ('"@bob" @carol: @dave; @erin?', ["bob", "carol", "dave", "erin"]),
        ("ping @bob.", ["bob."]),
        ("mail bob@example.com or x@bob", []),
        ("@@bob @ bob", []),
        ("line\n@bob\t@carol", ["bob", "carol"]),
        ("@bob.smith and @jo-ann+1", ["bob.smith", "jo-ann+1"]),
    ],
)
def test_tokens(body, tokens):
    assert mention_tokens(body) == tokens


def test_trailing_punctuation_is_tried_last():
    assert token_candidates("bob.") == ["bob.", "bob"]
    assert token_candidates("bob.-") == ["bob.-", "bob.", "bob"]
    assert lookup_names("@Bob, @BOB.") == {"bob", "bob."}


def test_exact_case_wins_among_usernames_differing_in_case():
    from messaging.mentions import MentionedUser

    lower, upper = MentionedUser(1, "bob", "Bob"), MentionedUser(2, "Bob", "Big Bob")
    found = {"bob": [lower, upper]}
    assert choose_mentions("@Bob", author_id=9, users_by_name=found) == [upper]
    assert choose_mentions("@bob", author_id=9, users_by_name=found) == [lower]
    assert choose_mentions("@BOB", author_id=9, users_by_name=found) == [lower]  # no exact: the oldest


# --- who is mentioned ----------------------------------------------------------------


@pytest.mark.django_db
def test_send_mentions_readers_in_order_once_never_the_author(alice, bob, carol, lobby):
    UserFactory(username="dave.smith", display_name="Dave")
    UserFactory(username="gone", is_active=False)
    message, _ = message_create(
        room=lobby,
        author=alice,
        body="(@carol) @BOB, @nobody @alice @carol again @bob. @dave.smith. @gone",
    )
    data = message_to_dict(message)
    assert names(data) == ["carol", "bob", "dave.smith"]
    assert data["mentions"][0] == {"id": carol.pk, "username": "carol", "display_name": "Carol"}
    rows = Mention.objects.filter(message=message).order_by("position")
    assert [(m.user.username, m.room_id, m.seq, m.position) for m in rows] == [
        ("carol", lobby.pk, 1, 0),
        ("bob", lobby.pk, 1, 1),
        ("dave.smith", lobby.pk, 1, 2),
    ]


@pytest.mark.django_db
def test_only_users_who_can_read_the_room(alice, bob, carol, lobby, private_room, bob_carol_dm):
    Membership.objects.create(room=private_room, user=bob)
    room_ban(room=lobby, actor=alice, user=carol)
    in_lobby, _ = message_create(room=lobby, author=alice, body="@bob @carol")
    in_private, _ = message_create(room=private_room, author=alice, body="@bob @carol")
    in_dm, _ = message_create(room=bob_carol_dm, author=bob, body="@carol @alice")
    assert names(message_to_dict(in_lobby)) == ["bob"]  # carol is banned
    assert names(message_to_dict(in_private)) == ["bob"]  # carol is not a member
    assert names(message_to_dict(in_dm)) == ["carol"]  # alice is not in the DM, staff or not


@pytest.mark.django_db
def test_batch_resolves_each_room_on_its_own(alice, bob, carol, lobby, private_room):
    Membership.objects.create(room=private_room, user=carol)
    results = messages_create(
        requests=[
            NewMessage(room_id=lobby.pk, author=alice, body="@bob @carol"),
            NewMessage(room_id=private_room.pk, author=alice, body="@bob @carol"),
            NewMessage(room_id=lobby.pk, author=bob, body="@bob and @alice"),
        ]
    )
    assert [names(r.data) for r in results] == [["bob", "carol"], ["carol"], ["alice"]]
    for posted in results:
        stored = Message.objects.get(pk=posted.message_id)
        assert message_to_dict(stored)["mentions"] == posted.data["mentions"]


@pytest.mark.django_db
def test_edit_reparses_and_delete_forgets(alice, bob, carol, lobby, monkeypatch, django_capture_on_commit_callbacks):
    message, _ = message_create(room=lobby, author=alice, body="@bob look")
    published = []
    monkeypatch.setattr("messaging.services.group_send_sync", lambda group, event: published.append((group, event)))

    with django_capture_on_commit_callbacks(execute=True):
        edited = message_edit(message=message, actor=alice, body="@carol look, and @bob")
    assert names(message_to_dict(edited)) == ["carol", "bob"]
    # message_updated for the room, `mention` for carol alone (bob was mentioned already).
    assert [(g, e["type"]) for g, e in published] == [
        (lobby.group_name, "chat.message_updated"),
        (f"user.{carol.pk}", "user.mention"),
    ]
    assert published[1][1]["user_id"] == carol.pk
    assert names(published[1][1]["message"]) == ["carol", "bob"]

    published.clear()
    with django_capture_on_commit_callbacks(execute=True):
        edited = message_edit(message=message, actor=alice, body="never mind")
    assert message_to_dict(edited)["mentions"] == []
    assert [e["type"] for _, e in published] == ["chat.message_updated"]
    assert not Mention.objects.exists()

    message_edit(message=message, actor=alice, body="@bob again")
    assert Mention.objects.filter(message=message).count() == 1
    deleted = message_delete(message=message, actor=alice)
    assert message_to_dict(deleted)["mentions"] == []
    assert not Mention.objects.exists()


# --- live, over the websocket ---------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_mention_reaches_every_socket_of_the_user_joined_or_not(ws, alice, bob, carol, lobby):
    async with ws(alice) as a, ws(bob) as in_room, ws(bob) as elsewhere, ws(carol) as c:
        await a.join("lobby")
        await in_room.join("lobby")
        await c.join("lobby")
        await a.send(type="send", room="lobby", body="hey @bob, see this", client_id="m-1", ref="r")
        ack = await a.recv_type("ack")
        assert names(ack["message"]) == ["bob"]
        assert ack["message"]["client_id"] == "m-1"

        message = (await in_room.recv_type("message"))["message"]
        assert names(message) == ["bob"]
        for socket in (in_room, elsewhere):
            frame = await socket.recv_type("mention")
            assert set(frame) == {"type", "room", "message"}
            assert frame["room"] == "lobby"
            assert frame["message"]["id"] == ack["message"]["id"]
            assert frame["message"]["client_id"] is None
            assert names(frame["message"]) == ["bob"]
        # Nobody else hears of it; the socket that joined nothing gets nothing else.
        for socket in (a, c):
            await socket.recv_type("message")
            await socket.nothing()
        await elsewhere.nothing()


@pytest.mark.django_db(transaction=True)
async def test_edit_over_rest_notifies_the_newly_mentioned(ws, alice, bob, carol, lobby):
    message, _ = await database_sync_to_async(message_create)(room=lobby, author=alice, body="hi @bob")
    async with ws(bob) as b, ws(carol) as c:
        await b.join("lobby")
        await database_sync_to_async(message_edit)(message=message, actor=alice, body="hi @bob and @carol")
        frame = await c.recv_type("mention")
        assert frame["message"]["id"] == message.pk
        assert frame["message"]["edited_at"] is not None
        assert names(frame["message"]) == ["bob", "carol"]
        updated = await b.recv_type("message_updated")
        assert names(updated["message"]) == ["bob", "carol"]
        await b.nothing()  # bob was mentioned before: no second notice

        await database_sync_to_async(message_edit)(message=message, actor=alice, body="hi all")
        updated = await b.recv_type("message_updated")
        assert updated["message"]["mentions"] == []
        await c.nothing()


@pytest.mark.django_db(transaction=True)
async def test_replay_and_retry_carry_mentions(ws, alice, bob, lobby):
    async with ws(alice) as a:
        await a.join("lobby")
        await a.send(type="send", room="lobby", body="@bob one", client_id="k")
        first = (await a.recv_type("ack"))["message"]
        await a.send(type="send", room="lobby", body="@bob one", client_id="k")
        again = (await a.recv_type("ack"))["message"]
        assert again["id"] == first["id"] and names(again) == ["bob"]
    async with ws(bob) as b:
        await b.send(type="join", room="lobby", after=0)
        replayed = await b.recv_type("message")
        assert names(replayed["message"]) == ["bob"]


@pytest.mark.django_db
def test_admin_message_page_lists_mentions(client, alice, bob, carol, lobby):
    from tests.factories import PASSWORD

    message, _ = message_create(room=lobby, author=bob, body="@carol and @alice, look")
    assert client.login(username="alice", password=PASSWORD)
    html = client.get(f"/admin/messaging/message/{message.pk}/change/").content.decode()
    assert "mentions" in html
    assert f'<a href="/admin/accounts/user/{carol.pk}/change/">@carol</a>, ' in html
    assert html.index("@carol</a>") < html.index("@alice</a>")

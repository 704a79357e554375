"""The server-rendered pages and the admin's live moderation (demo data: tests/demo/)."""

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from asgiref.sync import sync_to_async
from django.db import connections
from django.test import Client

from accounts.models import User
from messaging.models import Message
from messaging.services import message_create
from rooms.models import Ban, Membership, Room
from tests.factories import PASSWORD, MembershipFactory, RoomFactory
from tests.wsschema import check_server_frame

ROOT = Path(__file__).resolve().parents[2]


def boot_data(response) -> dict:
    """The JSON the room page hands to its script (json_script)."""
    html = response.content.decode()
    start = html.index('<script id="chat-boot" type="application/json">') + len(
        '<script id="chat-boot" type="application/json">'
    )
    return json.loads(html[start : html.index("</script>", start)])


# --- login, logout, sign-up -----------------------------------------------------


def test_anonymous_visitor_is_sent_to_login(db):
    response = Client().get("/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/"


def test_anonymous_room_page_is_sent_to_login(db, lobby):
    response = Client().get("/rooms/lobby/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_login_page_has_the_contract_fields(db):
    response = Client().get("/accounts/login/")
    html = response.content.decode()
    assert response.status_code == 200
    assert 'name="username"' in html and 'name="password"' in html
    assert 'href="/accounts/signup/"' in html


def test_login_then_logout(db, bob):
    client = Client()
    response = client.post("/accounts/login/", {"username": "bob", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/"
    home = client.get("/")
    assert home.status_code == 200
    assert "Signed in as" in home.content.decode() and "Bob" in home.content.decode()

    assert client.get("/accounts/logout/").status_code == 405  # logout is POST only
    response = client.post("/accounts/logout/")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    assert client.get("/").status_code == 302


def test_login_with_a_wrong_password_shows_an_error(db, bob):
    response = Client().post("/accounts/login/", {"username": "bob", "password": "wrong"})
    assert response.status_code == 200
    assert "correct username and password" in response.content.decode()


def test_login_follows_next(db, bob, lobby):
    response = Client().post(
        "/accounts/login/?next=/rooms/lobby/", {"username": "bob", "password": PASSWORD, "next": "/rooms/lobby/"}
    )
    assert response["Location"] == "/rooms/lobby/"


def test_signup_creates_a_user_and_logs_them_in(db):
    client = Client()
    assert client.get("/accounts/signup/").status_code == 200
    response = client.post(
        "/accounts/signup/",
        {
            "username": "dave",
            "display_name": " Dave Grohl ",
            "password1": "s3cret-pass-99",
            "password2": "s3cret-pass-99",
        },
    )
    assert response.status_code == 302 and response["Location"] == "/"
    dave = User.objects.get(username="dave")
    assert dave.display_name == "Dave Grohl" and dave.check_password("s3cret-pass-99")
    assert client.get("/").status_code == 200


def test_signup_rejects_mismatched_passwords_and_taken_usernames(db, bob):
    client = Client()
    response = client.post(
        "/accounts/signup/", {"username": "eve", "password1": "s3cret-pass-99", "password2": "other-pass-99"}
    )
    assert response.status_code == 200 and "match" in response.content.decode()
    response = client.post(
        "/accounts/signup/", {"username": "bob", "password1": "s3cret-pass-99", "password2": "s3cret-pass-99"}
    )
    assert response.status_code == 200 and "already exists" in response.content.decode()
    assert not User.objects.filter(username="eve").exists()


def test_signup_disabled_is_404(db, settings):
    settings.CHAT_SIGNUP_ENABLED = False
    client = Client()
    assert client.get("/accounts/signup/").status_code == 404
    response = client.post(
        "/accounts/signup/", {"username": "mallory", "password1": "s3cret-pass-99", "password2": "s3cret-pass-99"}
    )
    assert response.status_code == 404
    assert not User.objects.filter(username="mallory").exists()
    assert 'href="/accounts/signup/"' not in client.get("/accounts/login/").content.decode()


# --- the room list ----------------------------------------------------------------


def test_room_list_shows_visible_rooms_with_unread_counts(db, login, alice, bob, lobby, private_room):
    RoomFactory(slug="random", name="Random", created_by=alice)
    MembershipFactory(user=bob, room=lobby)
    for n in range(3):
        message_create(room=lobby, author=alice, body=f"hello {n}", rate_limit=False)

    html = login(bob).get("/").content.decode()
    assert 'href="/rooms/lobby/"' in html
    assert '3<span class="sr-only"> unread</span>' in html
    # Not a member of #random yet: offered a join button, not a link.
    assert 'action="/rooms/random/join/"' in html
    # A private room bob is not in does not exist for him.
    assert "/rooms/staff/" not in html and "Staff" not in html

    assert 'href="/rooms/staff/"' in login(alice).get("/").content.decode()


def test_join_button_makes_a_member(db, login, alice, bob):
    RoomFactory(slug="random", name="Random", created_by=alice)
    client = login(bob)
    response = client.post("/rooms/random/join/")
    assert response.status_code == 302 and response["Location"] == "/rooms/random/"
    assert Membership.objects.filter(room__slug="random", user=bob, role="member").exists()


def test_joining_a_private_room_is_404(db, login, bob, private_room):
    assert login(bob).post("/rooms/staff/join/").status_code == 404
    assert not Membership.objects.filter(room=private_room, user=bob).exists()


def test_create_room_from_the_list(db, login, bob):
    client = login(bob)
    response = client.post(
        "/", {"name": "Book club", "slug": "book-club", "description": "Reading", "is_private": "on"}
    )
    assert response.status_code == 302 and response["Location"] == "/rooms/book-club/"
    room = Room.objects.get(slug="book-club")
    assert room.is_private and room.name == "Book club"
    assert Membership.objects.get(room=room, user=bob).role == "owner"


def test_create_room_errors(db, login, bob, lobby):
    client = login(bob)
    taken = client.post("/", {"name": "Lobby 2", "slug": "lobby"})
    assert taken.status_code == 400 and "taken" in taken.content.decode()
    bad = client.post("/", {"name": "Bad", "slug": "-Bad Slug"})
    assert bad.status_code == 400 and "lowercase" in bad.content.decode()
    assert Room.objects.count() == 1


# --- a room -------------------------------------------------------------------------


def test_room_page_renders_history_and_composer(db, login, alice, bob, lobby):
    message_create(room=lobby, author=alice, body="first", rate_limit=False)
    message_create(room=lobby, author=bob, body="second\nline", client_id="c-1", rate_limit=False)
    response = login(bob).get("/rooms/lobby/")
    html = response.content.decode()
    assert response.status_code == 200
    assert '<label for="composer-input">Message</label>' in html
    assert '<textarea id="composer-input"' in html
    data = boot_data(response)
    assert data["room"] == {
        "slug": "lobby",
        "kind": "room",
        "name": "Lobby",
        "is_private": False,
        "is_locked": False,
        "last_seq": 2,
    }
    assert [m["body"] for m in data["messages"]] == ["first", "second\nline"]
    assert data["messages"][0]["author"]["display_name"] == "Alice"
    assert data["messages"][1]["client_id"] == "c-1"  # bob's own
    assert data["me"]["username"] == "bob" and data["can_moderate"] is False
    assert data["has_older"] is False


def test_room_page_keeps_the_last_50_and_knows_there_is_more(db, login, alice, lobby):
    for n in range(55):
        message_create(room=lobby, author=alice, body=f"m{n}", rate_limit=False)
    data = boot_data(login(alice).get("/rooms/lobby/"))
    assert [m["seq"] for m in data["messages"]] == list(range(6, 56))
    assert data["has_older"] is True and data["can_moderate"] is True


def test_message_bodies_never_reach_the_page_as_markup(db, login, alice, lobby):
    message_create(room=lobby, author=alice, body="<script>alert('x')</script><b>x</b>", rate_limit=False)
    html = login(alice).get("/rooms/lobby/").content.decode()
    assert "<script>alert" not in html and "<b>x</b>" not in html
    assert boot_data(login(alice).get("/rooms/lobby/"))["messages"][0]["body"] == "<script>alert('x')</script><b>x</b>"


def test_deleted_messages_are_rendered_without_body(db, login, alice, lobby):
    from messaging.services import message_delete

    message, _ = message_create(room=lobby, author=alice, body="secret", rate_limit=False)
    message_delete(message=message, actor=alice)
    data = boot_data(login(alice).get("/rooms/lobby/"))
    assert data["messages"][0]["deleted"] is True and data["messages"][0]["body"] == ""


def test_private_room_is_404_for_outsiders(db, login, alice, bob, private_room):
    assert login(bob).get("/rooms/staff/").status_code == 404
    assert login(alice).get("/rooms/staff/").status_code == 200
    MembershipFactory(user=bob, room=private_room)
    assert login(bob).get("/rooms/staff/").status_code == 200


def test_unknown_room_is_404(db, login, bob):
    assert login(bob).get("/rooms/nope/").status_code == 404


def test_banned_user_cannot_open_the_room(db, login, alice, bob, lobby):
    Ban.objects.create(room=lobby, user=bob, banned_by=alice)
    response = login(bob).get("/rooms/lobby/")
    assert response.status_code == 403 and "banned" in response.content.decode()


def test_static_files_are_served_locally(db):
    from django.contrib.staticfiles import finders

    for name in ("chat/app.css", "chat/room.js", "chat/favicon.svg"):
        assert finders.find(name), name
    script = (ROOT / "static/chat/room.js").read_text()
    sinks = (".innerHTML", ".outerHTML", "insertAdjacentHTML", "document.write", "DOMParser", "ContextualFragment")
    # User data goes in with textContent only, except a message's server-sanitized `html`,
    # parsed in an inert <template> and checked against the allow-list again (renderBody).
    assert [line.strip() for line in script.splitlines() if any(sink in line for sink in sinks)] == [
        "template.innerHTML = m.html; // inert: nothing in a template runs or loads"
    ]
    assert "http://" not in script and "https://" not in script  # no CDN


async def test_daphne_application_serves_the_static_files():
    """`make run` serves config.asgi:application with daphne alone: it must serve /static/."""
    from asgiref.testing import ApplicationCommunicator

    from config.asgi import application

    scope = {"type": "http", "method": "GET", "path": "/static/chat/room.js", "query_string": b"", "headers": []}
    comm = ApplicationCommunicator(application, scope)
    await comm.send_input({"type": "http.request", "body": b""})
    start = await comm.receive_output(3)
    body = b""
    while True:
        chunk = await comm.receive_output(3)
        body += chunk.get("body", b"")
        if not chunk.get("more_body"):
            break
    assert start["status"] == 200
    assert b"new WebSocket" in body


# --- admin: live moderation --------------------------------------------------------


def _admin_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
async def staff(alice):
    """alice's admin session for async tests; its requests run on asgiref's sync thread."""
    client = await sync_to_async(_admin_client)(alice)
    yield SimpleNamespace(get=sync_to_async(client.get), post=sync_to_async(client.post))
    # The test client keeps that thread's connection open, which would block
    # dropping the PostgreSQL test database at the end of the run.
    await sync_to_async(connections.close_all)()


async def _close_code(client, timeout: float = 3) -> int:
    while True:
        output = await client.comm.receive_output(timeout)
        if output["type"] == "websocket.close":
            return output["code"]
        check_server_frame(output["text"])


def test_admin_pages_load(db, alice, bob, lobby):
    message_create(room=lobby, author=bob, body="needle in a haystack", rate_limit=False)
    client = _admin_client(alice)
    for url in (
        "/admin/",
        "/admin/messaging/message/",
        "/admin/messaging/message/?q=needle",
        f"/admin/messaging/message/?room__id__exact={lobby.pk}&author__id__exact={bob.pk}&deleted=no",
        "/admin/rooms/room/",
        f"/admin/rooms/room/{lobby.pk}/change/",
        "/admin/accounts/user/",
        f"/admin/accounts/user/{bob.pk}/change/",
    ):
        response = client.get(url)
        assert response.status_code == 200, url
    assert "needle in a haystack" in client.get("/admin/messaging/message/?q=needle").content.decode()
    assert "needle" not in client.get("/admin/messaging/message/?q=zzz").content.decode()


def test_admin_cannot_add_or_rewrite_messages(db, alice, bob, lobby):
    message, _ = message_create(room=lobby, author=bob, body="original", rate_limit=False)
    client = _admin_client(alice)
    assert client.get("/admin/messaging/message/add/").status_code == 403
    response = client.post(
        f"/admin/messaging/message/{message.pk}/change/",
        {"room": lobby.pk, "seq": 99, "author": alice.pk, "body": "rewritten"},
    )
    assert response.status_code == 403
    message.refresh_from_db()
    assert (message.seq, message.author_id, message.body) == (1, bob.pk, "original")


def test_admin_requires_staff(db, login, bob):
    response = login(bob).get("/admin/messaging/message/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


@pytest.mark.django_db(transaction=True)
async def test_admin_soft_delete_action_reaches_open_sockets(ws, staff, alice, bob, lobby):
    message, _ = await sync_to_async(message_create)(room=lobby, author=bob, body="spam", rate_limit=False)
    async with ws(bob) as b:
        await b.join("lobby")
        response = await staff.post(
            "/admin/messaging/message/",
            {"action": "soft_delete_messages", "_selected_action": [str(message.pk)]},
        )
        assert response.status_code == 302
        frame = await b.recv_type("message_deleted")
        assert frame["message"]["id"] == message.pk and frame["message"]["seq"] == 1
        assert frame["message"]["deleted"] is True and frame["message"]["body"] == ""
    await sync_to_async(message.refresh_from_db)()
    assert message.deleted_at is not None and message.deleted_by_id == alice.pk
    assert await Message.objects.filter(pk=message.pk).aexists()  # soft: the row stays


@pytest.mark.django_db(transaction=True)
async def test_admin_delete_button_is_a_soft_delete(ws, staff, alice, bob, lobby):
    message, _ = await sync_to_async(message_create)(room=lobby, author=bob, body="rude", rate_limit=False)
    async with ws(bob) as b:
        await b.join("lobby")
        page = await staff.get(f"/admin/messaging/message/{message.pk}/delete/")
        assert page.status_code == 200
        response = await staff.post(f"/admin/messaging/message/{message.pk}/delete/", {"post": "yes"})
        assert response.status_code == 302
        frame = await b.recv_type("message_deleted")
        assert frame["message"]["id"] == message.pk
    stored = await Message.objects.aget(pk=message.pk)
    assert stored.deleted_at is not None and stored.body == "rude"


@pytest.mark.django_db(transaction=True)
async def test_admin_lock_and_unlock_reach_open_sockets(ws, staff, alice, bob, lobby):
    async with ws(bob) as b:
        await b.join("lobby")
        response = await staff.post("/admin/rooms/room/", {"action": "lock_rooms", "_selected_action": [str(lobby.pk)]})
        assert response.status_code == 302
        frame = await b.recv_type("room_updated")
        assert frame["room"]["slug"] == "lobby" and frame["room"]["is_locked"] is True
        await b.send(type="send", room="lobby", body="hello?", client_id="c1", ref="r1")
        error = await b.recv_type("error")
        assert error["code"] == "room_locked"

        await staff.post("/admin/rooms/room/", {"action": "unlock_rooms", "_selected_action": [str(lobby.pk)]})
        frame = await b.recv_type("room_updated")
        assert frame["room"]["is_locked"] is False
        await b.send(type="send", room="lobby", body="hello!", client_id="c2", ref="r2")
        assert (await b.recv_type("ack"))["message"]["body"] == "hello!"


@pytest.mark.django_db(transaction=True)
async def test_admin_room_form_lock_reaches_open_sockets(ws, staff, alice, bob, lobby):
    form = {
        "name": "Lobby",
        "description": "",
        "is_locked": "on",
        "created_by": str(alice.pk),
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
        "bans-TOTAL_FORMS": "0",
        "bans-INITIAL_FORMS": "0",
    }
    async with ws(bob) as b:
        await b.join("lobby")
        response = await staff.post(f"/admin/rooms/room/{lobby.pk}/change/", form)
        assert response.status_code == 302, response.content[:2000]
        frame = await b.recv_type("room_updated")
        assert frame["room"]["is_locked"] is True


@pytest.mark.django_db(transaction=True)
async def test_admin_ban_inline_cuts_the_socket_off(ws, staff, alice, bob, lobby):
    await sync_to_async(MembershipFactory)(user=bob, room=lobby)
    membership = await Membership.objects.aget(room=lobby, user=alice)
    form = {
        "name": "Lobby",
        "description": "",
        "created_by": str(alice.pk),
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
        "bans-TOTAL_FORMS": "1",
        "bans-INITIAL_FORMS": "0",
        "bans-0-user": str(bob.pk),
        "bans-0-room": str(lobby.pk),
    }
    assert membership.role == "owner"
    async with ws(bob) as b:
        await b.join("lobby")
        response = await staff.post(f"/admin/rooms/room/{lobby.pk}/change/", form)
        assert response.status_code == 302, response.content[:2000]
        error = await b.recv_type("error")
        assert error["code"] == "forbidden" and error["room"] == "lobby"
    assert await Ban.objects.filter(room=lobby, user=bob).aexists()
    assert not await Membership.objects.filter(room=lobby, user=bob).aexists()


@pytest.mark.django_db(transaction=True)
async def test_admin_deactivation_closes_the_socket_with_4403(ws, staff, alice, bob, lobby):
    async with ws(bob) as b:
        await b.join("lobby")
        response = await staff.post(
            "/admin/accounts/user/", {"action": "deactivate_users", "_selected_action": [str(bob.pk)]}
        )
        assert response.status_code == 302
        assert await asyncio.wait_for(_close_code(b), 3) == 4403
    assert not (await User.objects.aget(pk=bob.pk)).is_active


def test_admin_cannot_deactivate_itself(db, alice):
    _admin_client(alice).post(
        "/admin/accounts/user/", {"action": "deactivate_users", "_selected_action": [str(alice.pk)]}
    )
    alice.refresh_from_db()
    assert alice.is_active

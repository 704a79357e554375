"""REST writes reach open websockets, like the websocket's own writes."""

import asyncio

import pytest
from channels.db import database_sync_to_async

from tests.api.conftest import Api
from tests.factories import MembershipFactory

pytestmark = [pytest.mark.django_db(transaction=True)]


@database_sync_to_async
def call(user, method: str, url: str, data=None):
    """One REST call on the database thread (the test's event loop keeps serving the sockets).

    database_sync_to_async closes the thread's connection afterwards, which
    lets the test database be dropped at the end of the run.
    """
    client = Api(user)
    return getattr(client, method)(url, data) if data is not None else getattr(client, method)(url)


async def test_rest_send_is_broadcast_to_the_room(ws, alice, bob, lobby):
    async with ws(bob) as b:
        await b.join("lobby")
        r = await call(alice, "post", "/api/rooms/lobby/messages/", {"body": "from REST", "client_id": "r1"})
        assert r.status_code == 201
        frame = await b.recv_type("message")
        assert frame["message"] | {"created_at": None} == r.json() | {"client_id": None, "created_at": None}
        assert frame["message"]["seq"] == 1
        # An idempotent repeat broadcasts nothing.
        again = await call(alice, "post", "/api/rooms/lobby/messages/", {"body": "x", "client_id": "r1"})
        assert again.status_code == 200
        await b.nothing()


async def test_rest_send_reaches_the_senders_own_socket_with_client_id(ws, bob, lobby):
    async with ws(bob) as b:
        await b.join("lobby")
        r = await call(bob, "post", "/api/rooms/lobby/messages/", {"body": "mine", "client_id": "k"})
        frame = await b.recv_type("message")
        assert frame["message"]["id"] == r.json()["id"] and frame["message"]["client_id"] == "k"


async def test_rest_edit_delete_and_lock_are_broadcast(ws, alice, bob, lobby):
    await database_sync_to_async(MembershipFactory)(room=lobby, user=bob)
    async with ws(bob) as b:
        await b.join("lobby")
        sent = await call(bob, "post", "/api/rooms/lobby/messages/", {"body": "draft"})
        await b.recv_type("message")
        msg_id = sent.json()["id"]
        await call(bob, "patch", f"/api/messages/{msg_id}/", {"body": "final"})
        updated = await b.recv_type("message_updated")
        assert updated["message"]["body"] == "final" and updated["message"]["edited_at"] is not None
        await call(alice, "delete", f"/api/messages/{msg_id}/")
        deleted = await b.recv_type("message_deleted")
        assert deleted["message"]["deleted"] is True and deleted["message"]["body"] == ""
        await call(alice, "patch", "/api/rooms/lobby/", {"is_locked": True})
        room_updated = await b.recv_type("room_updated")
        assert room_updated["room"]["slug"] == "lobby" and room_updated["room"]["is_locked"] is True


async def test_rest_ban_cuts_the_users_socket_off(ws, alice, bob, lobby):
    async with ws(bob) as b:
        await b.join("lobby")
        r = await call(alice, "post", "/api/rooms/lobby/bans/", {"username": "bob"})
        assert r.status_code == 201
        error = await b.recv_type("error")
        assert error["code"] == "forbidden" and error["room"] == "lobby"
        await call(alice, "post", "/api/rooms/lobby/messages/", {"body": "after the ban"})
        await b.nothing()


async def members_online(user, expected: dict[str, bool], within: float = 2.0) -> dict[str, bool]:
    """Poll the members list: presence reaches the store within one batch (CHAT_PRESENCE_BATCH)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        r = await call(user, "get", "/api/rooms/lobby/members/")
        online = {m["user"]["username"]: m["online"] for m in r.json()}
        if online == expected or asyncio.get_running_loop().time() > deadline:
            return online
        await asyncio.sleep(0.02)


async def test_members_online_reflects_sockets(ws, alice, bob, lobby):
    async with ws(bob) as b:
        await b.join("lobby")
        assert await members_online(alice, {"alice": False, "bob": True}) == {"alice": False, "bob": True}
    assert await members_online(alice, {"alice": False, "bob": False}) == {"alice": False, "bob": False}

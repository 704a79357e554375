"""Outages of PostgreSQL and Redis under live traffic, and half-open sockets.

The shared database and Redis servers are never stopped: each server under test
talks to them through a `TcpProxy`, and the test cuts and restores the proxy.
"""

import asyncio
import json
import time

import pytest
from websockets.asyncio.client import connect

from chatclient import ChatClient

from .servers import SERVER_KINDS, TcpProxy, http_get

pytestmark = [pytest.mark.timeout(90)]


async def probe(url: str, token: str):
    return await connect(url, additional_headers={"Authorization": f"Token {token}"}, proxy=None)


async def reply(sock, ref: str, within: float = 10) -> dict:
    """The frame answering `ref` (skipping broadcasts)."""
    deadline = time.monotonic() + within
    while True:
        frame = json.loads(await asyncio.wait_for(sock.recv(), max(0.1, deadline - time.monotonic())))
        if frame.get("ref") == ref:
            return frame


def assert_consistent(clients: list[ChatClient], history: list[tuple], room: str) -> None:
    assert [row[0] for row in history] == list(range(1, len(history) + 1)), "history has gaps"
    client_ids = [row[2] for row in history if row[2] is not None]
    assert len(set(client_ids)) == len(client_ids), "a client_id was stored twice"
    for client in clients:
        state = client.rooms[room]
        assert state.duplicates == [] and state.gaps == []
        assert [(m["seq"], m["id"]) for m in state.messages] == [(row[0], row[1]) for row in history]
        for client_id, message in client.acked.items():
            assert (message["seq"], message["id"], client_id) in {(r[0], r[1], r[2]) for r in history}


@pytest.mark.postgres
async def test_database_outage_gives_unavailable_and_heals_itself(backends, servers):
    tokens = backends.seed(["alice", "bob"], ["outage"])
    proxy = TcpProxy("127.0.0.1", backends.pg_port).start()
    try:
        # One process with the in-memory layer: only the database fails here.
        server = servers(backends.env(DATABASE_URL=backends.database_url(proxy.port), REDIS_URL=""))
        alice = ChatClient(server.ws_url, tokens["alice"], rooms={"outage": 0}, backoff=(0.05, 0.5))
        bob = ChatClient(server.ws_url, tokens["bob"], rooms={"outage": 0}, backoff=(0.05, 0.5))
        for client in (alice, bob):
            await client.start()
            await client.wait_ready()
        raw = await probe(server.ws_url, tokens["alice"])
        await raw.send(json.dumps({"type": "join", "room": "outage", "ref": "j"}))
        assert (await reply(raw, "j"))["type"] == "joined"
        for i in range(3):
            await alice.send("outage", f"before {i}")

        proxy.cut()
        await raw.send(json.dumps({"type": "send", "room": "outage", "body": "x", "client_id": "p1", "ref": "p1"}))
        error = await reply(raw, "p1")
        assert error["type"] == "error" and error["code"] == "unavailable" and error["room"] == "outage"
        await raw.send(json.dumps({"type": "ping", "ref": "still-open"}))
        assert (await reply(raw, "still-open"))["type"] == "pong"
        status, body = http_get(f"{server.http_url}/readyz")
        assert status == 503 and body["database"].startswith("error") and body["channel_layer"] == "ok"
        # The reference client keeps these and retries them with the same client_id.
        during = [asyncio.ensure_future(alice.send("outage", f"during {i}")) for i in range(3)]
        # A send's `unavailable` comes once the connection pool gives up waiting
        # for a connection (DB_POOL_TIMEOUT), not at once.
        deadline = time.monotonic() + 15
        while not any(e["code"] == "unavailable" for e in alice.errors) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert any(e["code"] == "unavailable" for e in alice.errors)
        assert not any(t.done() for t in during)

        proxy.restore()
        # The very next send works: no restart, no manual reconnect.
        await raw.send(json.dumps({"type": "send", "room": "outage", "body": "y", "client_id": "p2", "ref": "p2"}))
        ack = await reply(raw, "p2")
        assert ack["type"] == "ack", ack
        await asyncio.wait_for(asyncio.gather(*during), 15)
        assert http_get(f"{server.http_url}/readyz")[0] == 200
        await raw.close()

        history = backends.history("outage")
        assert len(history) == 7 and "p1" not in {row[2] for row in history}
        for client in (alice, bob):
            await client.wait_for_seq("outage", 7)
            await client.stop()
        assert_consistent([alice, bob], history, "outage")
    finally:
        proxy.stop()


@pytest.mark.postgres
@pytest.mark.redis
async def test_redis_outage_loses_nothing_acknowledged(backends, servers):
    tokens = backends.seed(["alice", "bob", "carol"], ["flaky"])
    proxy = TcpProxy("127.0.0.1", int(backends.redis_url().rsplit(":", 1)[1].split("/")[0])).start()
    try:
        env = backends.env(REDIS_URL=backends.redis_url(proxy.port))
        a, b = servers(env), servers(env)
        clients = [
            ChatClient([first.ws_url, second.ws_url], tokens[user], rooms={"flaky": 0}, backoff=(0.05, 0.5))
            for user, (first, second) in zip(("alice", "bob", "carol"), ((a, b), (b, a), (a, b)), strict=True)
        ]
        for client in clients:
            await client.start()
            await client.wait_ready()
        await asyncio.gather(*(c.send("flaky", f"before {n}") for n, c in enumerate(clients)))

        proxy.cut()
        # Sends keep going: the database is fine, so some are stored (and acked),
        # while their broadcasts and the sockets' receive loops fail.
        sending = [
            asyncio.ensure_future(c.send("flaky", f"during {n}.{i}")) for n, c in enumerate(clients) for i in range(3)
        ]
        await asyncio.sleep(2.5)
        proxy.restore()
        await asyncio.wait_for(asyncio.gather(*sending), 30)
        await asyncio.gather(*(c.send("flaky", f"after {n}") for n, c in enumerate(clients)))

        history = backends.history("flaky")
        assert len(history) == 3 + 9 + 3
        for client in clients:
            await client.wait_for_seq("flaky", len(history), within=15)
        # Sockets never listen to the channel layer themselves: each process's
        # hub does, and with either layer it keeps retrying, rejoins its
        # groups and repairs the gap from the database. So no socket was
        # closed, with 1011 or otherwise.
        lost = [code for c in clients for code in c.closes]
        assert lost == [], lost
        for client in clients:
            await client.stop()
        assert_consistent(clients, history, "flaky")
    finally:
        proxy.stop()


@pytest.mark.postgres
@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_half_open_socket_is_dropped_by_server_pings(backends, servers, kind):
    """A peer that stops answering (no FIN, no RST) is noticed by the server's pings and goes offline.

    On both servers whatever CHAT_TEST_SERVER says: each has its own ping options.
    """
    room = f"pings-{kind}"
    tokens = backends.seed(["alice", "bob"], [room])
    server = servers(backends.env(REDIS_URL=""), kind=kind, ping_interval=1, ping_timeout=2)
    proxy = TcpProxy("127.0.0.1", server.port).start()
    try:
        bob = await probe(server.ws_url, tokens["bob"])
        await bob.send(json.dumps({"type": "join", "room": room, "ref": "j"}))
        await reply(bob, "j")
        alice = await probe(f"ws://127.0.0.1:{proxy.port}/ws/chat/", tokens["alice"])
        # No client pings of our own: only the server's may find out.
        await alice.send(json.dumps({"type": "join", "room": room, "ref": "j"}))
        await reply(alice, "j")
        online = json.loads(await asyncio.wait_for(bob.recv(), 5))
        assert online["type"] == "presence" and online["online"] is True
        proxy.freeze()
        frozen_at = time.monotonic()
        offline = json.loads(await asyncio.wait_for(bob.recv(), 15))
        assert offline["type"] == "presence" and offline["user"]["username"] == "alice" and offline["online"] is False
        assert time.monotonic() - frozen_at < 10
        await bob.close()
    finally:
        proxy.stop()

"""Two real daphne processes sharing PostgreSQL and Redis, with reference clients on each.

Every message reaches every member on both processes; a `kill -9` of one process
while its clients send loses nothing: they reconnect to the other one with
`after`, resend unacknowledged sends with the same client_id, and end up with
the identical, gap-free, repeat-free sequence that history holds.
"""

import asyncio
import itertools
import time

import pytest

from chatclient import ChatClient
from rooms.models import room_group_name

from .servers import http_get

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(90)]


def assert_identical_histories(clients: list[ChatClient], history: list[tuple], room: str) -> None:
    seqs = [row[0] for row in history]
    assert seqs == list(range(1, len(history) + 1)), "history has gaps"
    client_ids = [row[2] for row in history]
    assert len(set(client_ids)) == len(client_ids), "a client_id was stored twice"
    expected = [(row[0], row[1]) for row in history]
    for client in clients:
        state = client.rooms[room]
        assert state.duplicates == [] and state.gaps == []
        assert [(m["seq"], m["id"]) for m in state.messages] == expected


async def test_two_processes_and_a_kill(backends, servers):
    tokens = backends.seed(["alice", "bob", "carol"], ["lobby"])
    a = servers(backends.env())
    b = servers(backends.env())
    # Each user has a socket on each process; each client fails over to the other.
    clients = [
        ChatClient([first.ws_url, second.ws_url], tokens[user], rooms={"lobby": 0}, backoff=(0.05, 0.5))
        for user in ("alice", "bob", "carol")
        for first, second in ((a, b), (b, a))
    ]
    on_a = clients[0::2]
    for client in clients:
        await client.start()
    for client in clients:
        await client.wait_ready()

    # 1. Fan-out across processes.
    await asyncio.gather(*(c.send("lobby", f"hello {i} from {n}") for n, c in enumerate(clients) for i in range(10)))
    for client in clients:
        await client.wait_for_seq("lobby", 60)
    assert_identical_histories(clients, backends.history("lobby"), "lobby")
    # Ready while sockets hold the layer's receive loop (the probe shares it).
    for server in (a, b):
        status, body = http_get(f"{server.http_url}/readyz")
        assert (status, body) == (200, {"database": "ok", "channel_layer": "ok"})

    # 2. Keep sending from every client and kill process A in the middle.
    counter = itertools.count()

    async def keep_sending(client: ChatClient, count: int) -> None:
        async def one() -> None:
            await client.send("lobby", f"burst {next(counter)}")

        # A few sends in flight at once, so some are unacknowledged when A dies.
        for _ in range(count // 3):
            await asyncio.gather(one(), one(), one())
            await asyncio.sleep(0.02)

    senders = [asyncio.ensure_future(keep_sending(c, 30)) for c in clients]
    await asyncio.sleep(0.4)
    a.kill()
    killed_at = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*senders), 40)
    recovered_in = time.monotonic() - killed_at

    history = backends.history("lobby")
    total = 60 + 6 * 30
    assert len(history) == total
    for client in clients:
        await client.wait_for_seq("lobby", total, within=15)
        assert client.unacknowledged == []
    for client in clients:
        await client.stop()

    assert_identical_histories(clients, history, "lobby")
    acked = {cid: m for c in clients for cid, m in c.acked.items()}
    assert len(acked) == total
    assert {(m["seq"], m["id"]) for m in acked.values()} == {(row[0], row[1]) for row in history}
    # The clients on A really lost their socket and came back through B.
    for client in on_a:
        assert client.connections >= 2
    print(f"recovered {total} messages {recovered_in:.1f}s after the kill")


def redis_layer(backends):
    """A channel layer of the kind the servers use (CHANNEL_LAYER_BACKEND), on their Redis."""
    from channels_redis.core import RedisChannelLayer
    from channels_redis.pubsub import RedisPubSubChannelLayer

    kind = backends.env().get("CHANNEL_LAYER_BACKEND", "pubsub")
    layer_class = RedisChannelLayer if kind == "core" else RedisPubSubChannelLayer
    return layer_class(hosts=[backends.redis_url()], prefix=f"{backends.redis_prefix}:asgi")


async def test_idempotent_send_racing_on_two_processes(backends, servers):
    """The same client_id sent at once through both processes: one row, identical acks, one broadcast."""
    tokens = backends.seed(["alice", "bob"], ["race"])
    a = servers(backends.env())
    b = servers(backends.env())
    alice_a = ChatClient(a.ws_url, tokens["alice"], rooms={"race": 0})
    alice_b = ChatClient(b.ws_url, tokens["alice"], rooms={"race": 0})
    bob_b = ChatClient(b.ws_url, tokens["bob"], rooms={"race": 0})
    # A bare subscriber on the room's group counts what the servers broadcast.
    observer = redis_layer(backends)
    channel = await observer.new_channel("observer.")
    await observer.group_add(room_group_name("race"), channel)
    for client in (alice_a, alice_b, bob_b):
        await client.start()
        await client.wait_ready()

    rounds = 20
    for r in range(rounds):
        first, second = await asyncio.gather(
            alice_a.send("race", f"race {r}", client_id=f"race-{r}"),
            alice_b.send("race", f"race {r}", client_id=f"race-{r}"),
        )
        assert first == second
    await bob_b.wait_for_seq("race", rounds)

    broadcasts: list[int] = []
    while True:
        try:
            event = await asyncio.wait_for(observer.receive(channel), 1.5)
        except TimeoutError:
            break
        if event["type"] == "chat.message":
            broadcasts.append(event["seq"])
    await observer.group_discard(room_group_name("race"), channel)
    for client in (alice_a, alice_b, bob_b):
        await client.stop()

    history = backends.history("race")
    assert [row[0] for row in history] == list(range(1, rounds + 1))
    assert [row[2] for row in history] == [f"race-{r}" for r in range(rounds)]
    assert sorted(broadcasts) == list(range(1, rounds + 1))
    assert_identical_histories([alice_a, alice_b, bob_b], history, "race")

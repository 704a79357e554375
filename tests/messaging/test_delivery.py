"""The per-socket delivery promise under a channel layer that drops and reorders.

`LossyLayer` sits under the real consumer (config.asgi.application) in place of
the in-memory layer: it drops a seeded fraction of `chat.message` deliveries
per receiving socket and delays others so they arrive out of order. Each
socket must still see every message exactly once, in seq order, with no gaps.
"""

import asyncio
import random
import threading
import time

import pytest
from channels.db import database_sync_to_async
from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import connection

from messaging import db as messaging_db
from messaging.models import Message
from messaging.services import message_create
from rooms.models import Room
from tests.wsschema import check_server_frame

pytestmark = [pytest.mark.django_db(transaction=True)]

LAYER = "tests.messaging.test_delivery.LossyLayer"


class LossyLayer(InMemoryChannelLayer):
    """An in-memory layer that loses and reorders room broadcasts.

    For each (message, receiving socket) a seeded draw decides: drop (`drop`
    fraction), deliver after a random delay of up to `max_delay` seconds
    (`delay` fraction, which reorders), or deliver at once. `drop_seqs` are
    dropped for every socket. Other event types pass through untouched.
    """

    def __init__(
        self,
        drop: float = 0.0,
        delay: float = 0.0,
        max_delay: float = 0.2,
        seed: int = 0,
        drop_seqs: tuple[int, ...] = (),
        **kwargs,
    ) -> None:
        super().__init__(capacity=10_000, **kwargs)
        self.drop, self.delay, self.max_delay, self.seed = drop, delay, max_delay, seed
        self.drop_seqs = set(drop_seqs)
        self.dropped: list[tuple[str, int]] = []
        self.delayed = 0
        self.tasks: set[asyncio.Task] = set()

    async def group_send(self, group, message):
        if message.get("type") != "chat.message":
            return await super().group_send(group, message)
        seq = message["seq"]
        # Insertion order of the group is the join order, so the draws do not
        # depend on random channel names.
        for index, channel in enumerate(list(self.groups.get(group, {}))):
            rng = random.Random(f"{self.seed}:{group}:{seq}:{index}")
            draw = rng.random()
            if seq in self.drop_seqs or draw < self.drop:
                self.dropped.append((channel, seq))
            elif draw < self.drop + self.delay:
                self.delayed += 1
                task = asyncio.get_running_loop().create_task(self._later(channel, message, rng.random()))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            else:
                await self._deliver(channel, message)

    async def _later(self, channel, message, fraction):
        await asyncio.sleep(fraction * self.max_delay)
        await self._deliver(channel, message)

    async def _deliver(self, channel, message):
        try:
            await self.send(channel, message)
        except ChannelFull:
            self.dropped.append((channel, message["seq"]))


@pytest.fixture
def lossy(settings):
    def install(**config) -> LossyLayer:
        settings.CHANNEL_LAYERS = {"default": {"BACKEND": LAYER, "CONFIG": config}}
        layer = get_channel_layer()
        assert isinstance(layer, LossyLayer)
        return layer

    return install


@database_sync_to_async
def history(slug: str) -> list[tuple[int, int, str]]:
    return list(Message.objects.filter(room__slug=slug).order_by("seq").values_list("seq", "id", "body"))


@database_sync_to_async
def make_messages(room, author, count: int) -> None:
    """Rows straight into the table (seq continues the room's), for replay tests."""
    room.refresh_from_db()
    start = room.last_seq
    Message.objects.bulk_create(
        Message(room=room, author=author, seq=start + i, body=f"old {start + i}") for i in range(1, count + 1)
    )
    Room.objects.filter(pk=room.pk).update(last_seq=start + count)


async def collect(client, last_seq: int, within: float = 15.0) -> list[dict]:
    """Read until this socket has delivered `last_seq`; returns the `message` payloads."""
    got: list[dict] = []
    deadline = time.monotonic() + within
    while not got or got[-1]["seq"] < last_seq:
        frame = await client.recv(timeout=max(0.1, deadline - time.monotonic()))
        if frame["type"] == "message":
            got.append(frame["message"])
    return got


def assert_exactly_once_in_order(got: list[dict], first: int, last: int) -> None:
    seqs = [m["seq"] for m in got]
    assert seqs == list(range(first, last + 1)), f"repeats or gaps: {seqs}"
    assert len({m["id"] for m in got}) == len(got)


# --- drops and reordering ---------------------------------------------------


async def test_many_senders_over_a_lossy_reordering_layer(ws, lossy, alice, bob, carol, lobby):
    layer = lossy(drop=0.25, delay=0.35, max_delay=0.3, seed=7)
    per_sender = 30
    async with ws(alice) as a, ws(bob) as b, ws(carol) as c, ws(alice) as a2:
        sockets = [a, b, c, a2]
        for s in sockets:
            await s.join("lobby")

        async def send_all(sock, name):
            for i in range(per_sender):
                await sock.send(type="send", room="lobby", body=f"{name} {i}", client_id=f"{name}-{i}")

        total = per_sender * 3
        readers = [asyncio.ensure_future(collect(s, total, within=30)) for s in sockets]
        await asyncio.gather(send_all(a, "a"), send_all(b, "b"), send_all(c, "c"))
        results = await asyncio.gather(*readers)

    stored = await history("lobby")
    assert [seq for seq, _, _ in stored] == list(range(1, total + 1))
    for got in results:
        assert_exactly_once_in_order(got, 1, total)
        assert [(m["seq"], m["id"], m["body"]) for m in got] == stored
    # The layer really lost and reordered traffic, or this test proves nothing.
    assert len(layer.dropped) > 20 and layer.delayed > 20


async def test_trailing_drop_is_delivered_by_the_sweep(ws, lossy, settings, alice, bob, lobby):
    assert settings.CHAT_SWEEP_INTERVAL == 1.0
    layer = lossy(drop_seqs=(3,))
    async with ws(alice) as a, ws(bob) as b:
        await a.join("lobby")
        await b.join("lobby")
        for i in range(3):
            await a.send(type="send", room="lobby", body=f"m{i}", client_id=f"c{i}")
        started = time.monotonic()
        got_b = await collect(b, 3, within=5)
        got_a = await collect(a, 3, within=5)
        elapsed = time.monotonic() - started
    assert_exactly_once_in_order(got_a, 1, 3)
    assert_exactly_once_in_order(got_b, 1, 3)
    # One subscription per process: the layer had one copy of seq 3 to lose,
    # not one per socket. Nothing followed it to reveal the gap: only the
    # sweep could find it, within two sweeps (plus scheduling slack).
    assert [seq for _, seq in layer.dropped] == [3]
    assert elapsed < 2 * settings.CHAT_SWEEP_INTERVAL + 1.0


async def test_messages_sent_while_a_join_replays(ws, lossy, monkeypatch, alice, bob, carol, lobby):
    """Messages committed between subscribing and reading the replay arrive twice; the socket shows them once."""
    lossy(drop=0.2, delay=0.3, seed=3)
    await make_messages(lobby, alice, 20)
    reached, release = asyncio.Event(), asyncio.Event()
    real_join = messaging_db.join_room

    async def gated_join(**kwargs):
        if kwargs["user"].pk == carol.pk:
            # carol's socket is in the room's group already; hold the replay read here.
            reached.set()
            await release.wait()
        return await real_join(**kwargs)

    monkeypatch.setattr(messaging_db, "join_room", gated_join)
    async with ws(alice) as a, ws(bob) as b, ws(carol) as c:
        await a.join("lobby")
        await b.join("lobby")
        await c.send(type="join", room="lobby", after=0)
        await asyncio.wait_for(reached.wait(), 3)
        for i in range(5):  # in the group and in the replay
            await b.send(type="send", room="lobby", body=f"during {i}", client_id=f"d{i}")
            await b.recv_type("ack")
        release.set()
        for i in range(10):  # racing the replay, then live only
            await b.send(type="send", room="lobby", body=f"after {i}", client_id=f"e{i}")

        frames = []
        while not (frames and frames[-1]["type"] == "message" and frames[-1]["message"]["seq"] == 35):
            frame = await c.recv(timeout=10)
            if frame["type"] in ("message", "joined"):
                frames.append(frame)

    joined = [f for f in frames if f["type"] == "joined"]
    assert len(joined) == 1 and joined[0]["recovered"] is True
    before_joined = frames[: frames.index(joined[0])]
    assert [f["message"]["seq"] for f in before_joined] == list(range(1, joined[0]["last_seq"] + 1))
    assert joined[0]["last_seq"] >= 25
    assert_exactly_once_in_order([f["message"] for f in frames if f["type"] == "message"], 1, 35)


# --- join with `after` -------------------------------------------------------


async def test_join_after_replays_then_recovered(ws, alice, bob, lobby):
    await make_messages(lobby, alice, 10)
    async with ws(bob) as b:
        await b.send(type="join", room="lobby", after=4, ref="j")
        replay = [await b.recv() for _ in range(6)]
        joined = await b.recv()
        assert [f["message"]["seq"] for f in replay] == [5, 6, 7, 8, 9, 10]
        assert joined == {
            "type": "joined",
            "room": "lobby",
            "last_seq": 10,
            "ref": "j",
            "recovered": True,
            "online": joined["online"],
        }
        await b.send(type="send", room="lobby", body="live", client_id="x")
        live = await b.recv_type("message")
        assert live["message"]["seq"] == 11


async def test_join_after_more_than_the_replay_limit(ws, settings, alice, bob, lobby):
    assert settings.CHAT_REPLAY_LIMIT == 500
    await make_messages(lobby, alice, 520)
    async with ws(bob) as b:
        await b.send(type="join", room="lobby", after=0)
        replay = [await b.recv() for _ in range(500)]
        joined = await b.recv()
        assert [f["message"]["seq"] for f in replay] == list(range(1, 501))
        assert joined["type"] == "joined" and joined["recovered"] is False and joined["last_seq"] == 520
        # Live delivery continues from last_seq + 1; 501..520 are the client's to page over REST,
        # and the watcher must not push them into the live stream either.
        await b.send(type="send", room="lobby", body="live", client_id="x")
        frames = [await b.recv(), await b.recv()]
        live = [f for f in frames if f["type"] == "message"]
        assert [f["message"]["seq"] for f in live] == [521]
        await b.nothing(timeout=2.5)


async def test_join_after_beyond_last_seq(ws, alice, bob, lobby):
    await make_messages(lobby, alice, 3)
    async with ws(bob) as b:
        joined = await b.join("lobby", after=50)
        assert joined["last_seq"] == 3 and joined["recovered"] is True
        await b.send(type="send", room="lobby", body="live", client_id="x")
        assert (await b.recv_type("message"))["message"]["seq"] == 4


@pytest.mark.parametrize("after", [-1, True, "3", 1.5])
async def test_join_after_must_be_a_non_negative_integer(ws, bob, lobby, after):
    async with ws(bob) as b:
        await b.send(type="join", room="lobby", after=after, ref="j")
        error = await b.recv()
        assert error["type"] == "error" and error["code"] == "bad_request" and error["ref"] == "j"


async def test_rejoin_after_a_disconnect_misses_nothing(ws, alice, bob, lobby):
    async with ws(alice) as a:
        await a.join("lobby")
        async with ws(bob) as b:
            await b.join("lobby")
            for i in range(3):
                await a.send(type="send", room="lobby", body=f"m{i}", client_id=f"c{i}")
            seen = await collect(b, 3)
        for i in range(3, 7):  # while bob is away
            await a.send(type="send", room="lobby", body=f"m{i}", client_id=f"c{i}")
            await a.recv_type("ack")
        async with ws(bob) as b:
            await b.send(type="join", room="lobby", after=seen[-1]["seq"])
            await a.send(type="send", room="lobby", body="m7", client_id="c7")
            rest = await collect(b, 8)
    assert_exactly_once_in_order(seen + rest, 1, 8)


# --- idempotent sends ----------------------------------------------------------


async def test_send_retry_returns_the_original_and_broadcasts_nothing(ws, alice, bob, lobby):
    async with ws(alice) as a, ws(bob) as b:
        await a.join("lobby")
        await b.join("lobby")
        await a.send(type="send", room="lobby", body="once", client_id="same", ref="1")
        first = await a.recv_type("ack")
        await a.send(type="send", room="lobby", body="once again", client_id="same", ref="2")
        second = await a.recv_type("ack")
        assert second["ref"] == "2" and second["message"] == first["message"]
        assert (await b.recv_type("message"))["message"]["seq"] == 1
        await b.nothing(timeout=1.5)
    assert await history("lobby") == [(1, first["message"]["id"], "once")]


@pytest.mark.postgres
def test_idempotent_send_racing_in_two_threads(alice, lobby, monkeypatch):
    """Two connections send the same client_id at the same instant: one row, one broadcast."""
    broadcasts: list[dict] = []
    monkeypatch.setattr("messaging.services.group_send_sync", lambda group, event: broadcasts.append(event))
    rounds = 10
    for r in range(rounds):
        barrier = threading.Barrier(2)
        results: list = []
        errors: list = []

        def attempt(r=r, barrier=barrier, results=results, errors=errors):
            try:
                barrier.wait()
                results.append(message_create(room=lobby, author=alice, body=f"race {r}", client_id=f"race-{r}"))
            except Exception as exc:  # surfaced by the assertion below
                errors.append(exc)
            finally:
                connection.close()

        threads = [threading.Thread(target=attempt) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert not errors
        (m1, created1), (m2, created2) = results
        assert (m1.pk, m1.seq) == (m2.pk, m2.seq)
        assert sorted([created1, created2]) == [False, True]
    assert Message.objects.filter(room=lobby).count() == rounds
    assert [e["seq"] for e in broadcasts] == list(range(1, rounds + 1))


# --- liveness -------------------------------------------------------------------


async def test_idle_socket_is_closed_with_4408_and_pings_keep_one_open(ws, settings, bob, lobby):
    settings.CHAT_IDLE_TIMEOUT = 1.5
    async with ws(bob) as quiet, ws(bob) as chatty:
        await quiet.join("lobby")
        await chatty.join("lobby")
        started = time.monotonic()
        closed = None
        while closed is None and time.monotonic() - started < 6:
            await chatty.send(type="ping", ref="p")
            assert (await chatty.recv_type("pong"))["ref"] == "p"
            if not await quiet.comm.receive_nothing(0.3):
                output = await quiet.comm.receive_output(1)
                if output["type"] == "websocket.close":
                    closed = output
                else:
                    check_server_frame(output["text"])
        elapsed = time.monotonic() - started
        assert closed == {"type": "websocket.close", "code": 4408}
        # Within one sweep of the timeout, and not before it.
        assert settings.CHAT_IDLE_TIMEOUT <= elapsed < settings.CHAT_IDLE_TIMEOUT + settings.CHAT_SWEEP_INTERVAL + 1
        # The socket that kept talking is still served.
        await chatty.send(type="ping", ref="q")
        assert (await chatty.recv_type("pong"))["ref"] == "q"

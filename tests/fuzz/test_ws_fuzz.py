"""Fuzzing the websocket face: generated client frames against the real consumer.

One socket (config.asgi.application through WebsocketCommunicator) and one
database live through every example, so an example costs a few frames and a
few COUNT queries, not a test database. Properties, for every input:

- the socket is never closed, except with 1009 for a frame over 64 KiB;
- every server frame matches ServerFrame in /api/ws-schema/;
- a frame answered with `error` stores nothing (messages, deletions, reactions,
  memberships and read markers unchanged), and `unavailable` never appears (the database is healthy);
- an accepted `send` is acked once, stored exactly once (a retry with the same
  client_id stores nothing more), and reaches the socket as `message`;
- a frame that can only be right (ping, a valid send in the joined room) is accepted;
- a reply echoes a valid `ref`, and nothing that is not a JSON object is answered but with bad_request.

FUZZ_EXAMPLES sets the number of examples (default 300, for CI); `make fuzz` runs
2,000. Runs are derandomized (the same examples every time) unless FUZZ_RANDOM=1.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.asgi import application
from messaging.consumers import _has_lone_surrogate as has_lone_surrogate
from messaging.models import Attachment, Message, Reaction
from messaging.ws_schema import ws_schema
from rooms.models import Membership
from tests.factories import DmFactory, MessageFactory, RoomFactory, UserFactory, token_for
from tests.wsschema import check_client_frame, check_server_frame

from .report import LINES
from .strategies import Payload, World, payloads

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
RANDOM = os.environ.get("FUZZ_RANDOM") == "1"
# The members each client frame has in the published schema, by type.
CLIENT_MEMBERS = {
    definition["properties"]["type"]["const"]: set(definition["properties"])
    for name, definition in ws_schema()["$defs"].items()
    if name in {one["$ref"].rsplit("/", 1)[1] for one in ws_schema()["$defs"]["ClientFrame"]["oneOf"]}
}
# Direct replies to the frame under test (everything else is a room event).
REPLIES = {"ack", "error", "joined", "left", "pong"}


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        derandomize=not RANDOM,
        database=None,
        deadline=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )


def snapshot() -> tuple[int, int, int, int, list[tuple[int, int, int]]]:
    """What a refused frame must leave as it was (counts first: a closed socket must leave those)."""
    markers = list(Membership.objects.order_by("pk").values_list("pk", "room_id", "last_read_seq"))
    deleted = Message.objects.filter(deleted_at__isnull=False).count()
    return Message.objects.count(), Reaction.objects.count(), Membership.objects.count(), deleted, markers


class Harness:
    """One socket through many examples; checks the properties of each exchange."""

    def __init__(self, loop: asyncio.AbstractEventLoop, world: World, token: str) -> None:
        self.loop = loop
        self.world = world
        self.token = token
        self.comm: WebsocketCommunicator | None = None
        self.joined: set[str] = set()
        self.seen_messages: collections.Counter[int] = collections.Counter()
        self.client_ids: dict[str, set[str]] = collections.defaultdict(set)
        self.sync = 0
        self.stats: collections.Counter[str] = collections.Counter()

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    async def open(self) -> None:
        headers = [(b"authorization", f"Token {self.token}".encode())]
        self.comm = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
        connected, _ = await self.comm.connect()
        assert connected
        self.joined = set()
        await self.ensure_home()

    async def close(self) -> None:
        if self.comm is not None:
            await self.comm.disconnect()
            self.comm = None

    async def ensure_home(self) -> None:
        if self.world.home not in self.joined:
            frames, close = await self.exchange(json.dumps({"type": "join", "room": self.world.home}))
            assert close is None and any(f["type"] == "joined" for f in frames), frames

    async def exchange(self, data: str | bytes) -> tuple[list[dict[str, Any]], int | None]:
        """Send `data`, then a ping; return every frame before its pong (or the close code)."""
        assert self.comm is not None
        # send_input, not send_to, which refuses an empty frame.
        key = "bytes" if isinstance(data, bytes) else "text"
        await self.comm.send_input({"type": "websocket.receive", key: data})
        self.sync += 1
        marker = {"type": "pong", "ref": f"fuzz-sync-{self.sync}"}
        await self.comm.send_to(text_data=json.dumps({"type": "ping", "ref": marker["ref"]}))
        frames: list[dict[str, Any]] = []
        while True:
            out = await self.comm.receive_output(timeout=10)
            if out["type"] == "websocket.close":
                return frames, out.get("code", 1000)
            frame = check_server_frame(out["text"])
            if frame == marker:
                return frames, None
            self.observe(frame)
            frames.append(frame)

    def observe(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        self.stats[f"event:{kind}"] += 1
        if kind == "message":
            self.seen_messages[frame["message"]["id"]] += 1
        elif kind == "joined":
            self.joined.add(frame["room"])
        elif kind == "left":
            self.joined.discard(frame["room"])

    async def wait_for_message(self, message_id: int) -> None:
        """A new message's broadcast leaves on commit, so it may come after the ack's pong."""
        assert self.comm is not None
        while not self.seen_messages[message_id]:
            out = await self.comm.receive_output(timeout=5)
            assert out["type"] == "websocket.send", f"socket closed waiting for message {message_id}: {out}"
            self.observe(check_server_frame(out["text"]))

    def check(self, payload: Payload) -> None:
        self.stats[payload.label] += 1
        before = snapshot()
        was_joined = set(self.joined)
        frames, close = self.run(self.exchange(payload.data))
        after = snapshot()
        replies = [f for f in frames if f["type"] in REPLIES]
        errors = [f for f in replies if f["type"] == "error"]
        for error in errors:
            self.stats[f"error:{error['code']}"] += 1

        if close is not None:
            self.stats[f"close:{close}"] += 1
            assert payload.oversize and close == 1009, f"closed with {close} for {payload!r}"
            assert before[:4] == after[:4], "a frame that closed the socket stored something"
            self.run(self.close())
            self.run(self.open())
            return
        assert not payload.oversize, f"a frame over 64 KiB was not closed with 1009: {payload.label}"
        assert len(errors) <= 1 and len([f for f in replies if f["type"] == "ack"]) <= 1, replies
        assert not any(e["code"] == "unavailable" for e in errors), f"{errors} for {payload!r}"

        frame = payload.frame
        if frame is None:
            # Not a JSON object: one bad_request, nothing else.
            assert [(e["code"]) for e in replies] == ["bad_request"], f"{replies} for {payload!r}"
        if errors:
            assert before == after, f"refused with {errors[0]['code']} but something was stored: {payload!r}"
        if frame is not None and replies:
            ref = frame.get("ref")
            if isinstance(ref, str) and 1 <= len(ref) <= 64 and not has_lone_surrogate(frame):
                assert all(r.get("ref") == ref for r in replies), f"{replies} for ref {ref!r}"

        acks = [f for f in replies if f["type"] == "ack"]
        if acks:
            self.stats["accepted:send"] += 1
            message = acks[0]["message"]
            assert frame is not None and frame.get("type") == "send"
            room, client_id = message["room"], message["client_id"]
            assert client_id == frame["client_id"]
            stored = Message.objects.filter(room__slug=room, author__username="fuzzer", client_id=client_id)
            assert stored.count() == 1, f"{stored.count()} rows for one acked send"
            retry = client_id in self.client_ids[room]
            assert after[0] - before[0] == (0 if retry else 1), "an acked send stored the wrong number of rows"
            if not retry:
                attached = frame.get("attachments") or []
                assert [a["id"] for a in message["attachments"]] == attached, "attachments out of order"
                if attached:
                    self.stats["accepted:send-with-attachments"] += 1
                self.client_ids[room].add(client_id)
                self.run(self.wait_for_message(message["id"]))
        elif frame is not None and expected_to_be_acked(frame, self.world, was_joined, self.client_ids):
            raise AssertionError(f"a valid send was not acked: {frame!r} -> {replies}")
        if frame is not None and not errors and frame.get("type") in CLIENT_MEMBERS:
            # The schema is not stricter than the server: a frame it took, minus the
            # members it ignores (unknown ones; optional ones given as null), is a ClientFrame.
            kind = frame["type"]
            known = {k: v for k, v in frame.items() if k in CLIENT_MEMBERS[kind] and (v is not None or k == "reply_to")}
            check_client_frame(known)
        if frame is not None and frame.get("type") == "ping" and not errors:
            assert [r["type"] for r in replies] == ["pong"], replies
        if self.world.home not in self.joined:
            self.run(self.ensure_home())


def expected_to_be_acked(frame: dict[str, Any], world: World, joined: set[str], used: dict[str, set[str]]) -> bool:
    """A send that nothing in the contract lets the server refuse."""
    if has_lone_surrogate(frame):
        return False
    if frame.get("type") != "send" or frame.get("room") != world.home or world.home not in joined:
        return False
    body, client_id, ref = frame.get("body"), frame.get("client_id"), frame.get("ref")
    if not isinstance(body, str) or not 1 <= len(body.strip()) <= 4000 or "\x00" in body:
        return False
    if not isinstance(client_id, str) or not 1 <= len(client_id) <= 64 or "\x00" in client_id:
        return False
    if ref is not None and not (isinstance(ref, str) and 1 <= len(ref) <= 64):
        return False
    if "attachments" in frame and frame["attachments"] != []:
        return False
    reply_to = frame.get("reply_to")
    # type(): 1.0 == 1 and True == 1, and neither is an id.
    return reply_to is None or (type(reply_to) is int and reply_to in world.home_ids[:-1])


@pytest.fixture
def world(db):
    me = UserFactory(username="fuzzer", display_name="Fuzz Er")
    bob = UserFactory(username="bob", display_name="Bob")
    alice = UserFactory(username="alice", display_name="Alice")
    home = RoomFactory(slug="lobby", created_by=alice)
    public = RoomFactory(slug="random", created_by=alice)
    private = RoomFactory(slug="staff", created_by=alice, is_private=True)
    others_dm = DmFactory(participants=[alice, bob])
    own_dm = DmFactory(participants=[me, bob])
    Membership.objects.create(room=home, user=me)
    home_messages = [MessageFactory(room=home, author=author) for author in (alice, bob, me)]
    deleted = MessageFactory(room=home, author=bob, body="", deleted_at=timezone.now())
    elsewhere = [MessageFactory(room=public, author=alice), MessageFactory(room=private, author=alice)]
    # Rows only (no stored file): sending never reads the file, and nothing downloads here.
    uploads = Attachment.objects.bulk_create(
        Attachment(
            room=home, uploader=me, file=f"attachments/fuzz-{i}", name=f"f{i}.txt", size=i, content_type="text/plain"
        )
        for i in range(40)
    )
    return (
        World(
            home=home.slug,
            public=public.slug,
            private=private.slug,
            dm=others_dm.slug,
            own_dm=own_dm.slug,
            home_ids=(*(m.pk for m in home_messages), deleted.pk),
            other_ids=tuple(m.pk for m in elsewhere),
            upload_ids=tuple(u.pk for u in uploads),
        ),
        token_for(me),
    )


@pytest.mark.timeout(max(120, EXAMPLES // 4))
@pytest.mark.django_db(transaction=True)
def test_client_frames_never_break_the_socket_or_the_store(world):
    the_world, token = world
    loop = asyncio.new_event_loop()
    harness = Harness(loop, the_world, token)
    harness.run(harness.open())

    @fuzz_settings(EXAMPLES)
    @given(payload=payloads(the_world))
    def exchange(payload: Payload) -> None:
        harness.check(payload)

    @fuzz_settings(max(10, EXAMPLES // 10))
    @given(frames=st.lists(payloads(the_world), min_size=2, max_size=6))
    def sequence(frames: list[Payload]) -> None:
        # Runs of frames, so a join, leave or send changes what the next frame meets
        # (and hypothesis shrinks a failure to the shortest run that shows it).
        for payload in frames:
            harness.check(payload)

    try:
        exchange()
        sequence()
    finally:
        harness.run(harness.close())
        loop.close()
    total = sum(v for k, v in harness.stats.items() if k.startswith(("frame:", "broken:")))
    LINES.append(f"websocket: {total} frames in {EXAMPLES} + {max(10, EXAMPLES // 10)} examples")
    for prefix in ("frame:", "broken:", "accepted:", "error:", "close:", "event:"):
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(harness.stats.items()) if k.startswith(prefix))
        LINES.append(f"  {counts}")

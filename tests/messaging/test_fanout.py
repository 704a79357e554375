"""The per-process fan-out (messaging.fanout): one subscription per room per
process, frames encoded once per variant, presence batched per room."""

import asyncio
import time
from contextlib import AsyncExitStack

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from messaging import fanout
from rooms.models import room_group_name
from tests.factories import UserFactory

pytestmark = [pytest.mark.django_db(transaction=True)]


def group_members(group: str) -> set[str]:
    """This process's channels in a group: the in-memory layer, or the Redis Pub/Sub layer's local view."""
    layer = get_channel_layer()
    if hasattr(layer, "_get_layer"):  # channels_redis.pubsub: one layer per event loop
        loop_layer = layer._get_layer()
        return set(loop_layer.groups.get(loop_layer._get_group_channel_name(group), set()))
    return set(layer.groups.get(group, {}))


async def test_one_subscription_per_room_and_per_user_for_the_whole_process(ws, alice, bob, carol, lobby):
    async with ws(alice) as a1, ws(alice) as a2, ws(bob) as b, ws(carol) as c:
        for sock in (a1, a2, b, c):
            await sock.join("lobby")
        process_channel = fanout.hub().channel
        assert group_members(room_group_name("lobby")) == {process_channel}
        assert group_members(f"user.{alice.pk}") == {process_channel}

        await a1.send(type="send", room="lobby", body="once", client_id="k1")
        await a1.recv_type("ack")
        for sock in (a1, a2, b, c):
            assert (await sock.recv_type("message"))["message"]["body"] == "once"

        for sock in (a1, a2, b):
            await sock.send(type="leave", room="lobby")
            await sock.recv_type("left")
        # carol is still there: the process keeps hearing the room.
        assert group_members(room_group_name("lobby")) == {process_channel}
        await c.send(type="leave", room="lobby")
        await c.recv_type("left")
        for _ in range(50):
            if not group_members(room_group_name("lobby")):
                break
            await asyncio.sleep(0.02)
        assert group_members(room_group_name("lobby")) == set()
    # The last socket of each user closed: the user groups are left too.
    assert group_members(f"user.{alice.pk}") == set()


async def test_each_frame_is_encoded_once_per_variant(ws, monkeypatch, alice, lobby):
    calls: list[int | None] = []
    real = fanout.encode_message

    def counting(kind, message, viewer_id):
        calls.append(viewer_id)
        return real(kind, message, viewer_id)

    monkeypatch.setattr(fanout, "encode_message", counting)
    users = await database_sync_to_async(lambda: [UserFactory() for _ in range(8)])()
    async with AsyncExitStack() as stack:
        listeners = [await stack.enter_async_context(ws(u)) for u in users]
        author = await stack.enter_async_context(ws(alice))
        for sock in [*listeners, author]:
            await sock.join("lobby")
        calls.clear()
        await author.send(type="send", room="lobby", body="hello", client_id="c1")
        await author.recv_type("ack")
        got = [await sock.recv_type("message") for sock in listeners]
        mine = await author.recv_type("message")
    assert {g["message"]["client_id"] for g in got} == {None}
    assert mine["message"]["client_id"] == "c1"
    # Nine sockets, two encodings: everyone else's and the author's.
    assert sorted(calls, key=str) == sorted([None, alice.pk], key=str)


async def test_join_storm_sends_batched_presence_and_goes_quiet(ws, monkeypatch, settings, alice, lobby):
    settings.CHAT_PRESENCE_BATCH = 0.25
    layer = get_channel_layer()
    broadcasts: list[dict] = []
    real_group_send = layer.group_send

    async def counting_group_send(group, message):
        if message["type"] == "chat.presence":
            broadcasts.append(message)
        await real_group_send(group, message)

    monkeypatch.setattr(layer, "group_send", counting_group_send)
    users = await database_sync_to_async(lambda: [UserFactory() for _ in range(40)])()
    async with AsyncExitStack() as stack:
        watcher = await stack.enter_async_context(ws(alice))
        await watcher.join("lobby")
        sockets = [await stack.enter_async_context(ws(u)) for u in users]
        started = time.monotonic()
        await asyncio.gather(*(sock.join("lobby") for sock in sockets))
        seen: set[int] = set()
        while len(seen) < len(users):
            frame = await watcher.recv_type("presence", timeout=2)
            assert frame["online"] is True
            seen.add(frame["user"]["id"])
        quiet_after = time.monotonic() - started
        await watcher.nothing(timeout=0.5, ignore=())
    assert seen == {u.pk for u in users}
    # 41 arrivals, but at most one broadcast per batch window (plus alice's
    # own and the last partial window), however many sockets joined in it.
    assert len(broadcasts) <= quiet_after / settings.CHAT_PRESENCE_BATCH + 2, [len(b["changes"]) for b in broadcasts]
    assert sum(len(b["changes"]) for b in broadcasts) == 41


async def test_a_late_joiner_sees_earlier_arrivals_in_joined_online(ws, alice, bob, carol, lobby):
    async with ws(alice) as a, ws(bob) as b:
        await a.join("lobby")
        await b.join("lobby")
        await a.recv_type("presence")
        async with ws(carol) as c:
            joined = await c.join("lobby")
    assert [u["username"] for u in joined["online"]] == ["alice", "bob", "carol"]


async def test_an_arrival_during_a_batch_being_sent_goes_out_in_the_next(ws, monkeypatch, alice, bob, lobby):
    from rooms.presence import presence

    store = presence()
    real_add_many = store.add_many
    sending, release = asyncio.Event(), asyncio.Event()

    async def slow_add_many(room, entries):
        if not sending.is_set():
            sending.set()
            await release.wait()  # alice's batch is on its way out
        return await real_add_many(room, entries)

    monkeypatch.setattr(store, "add_many", slow_add_many)
    async with ws(alice) as a, ws(bob) as b:
        await a.join("lobby")
        await asyncio.wait_for(sending.wait(), 2)
        await b.join("lobby")  # queued while the first batch is still sending
        release.set()
        frame = await a.recv_type("presence")
    assert (frame["user"]["username"], frame["online"]) == ("bob", True)


async def test_a_sweep_that_swallows_its_cancellation_still_stops(ws, monkeypatch, alice, lobby):
    """A cancel that a library turns into an ordinary error mid-sweep must still end the loop (was: shutdown hung)."""
    entered = asyncio.Event()

    async def swallowing_sweep(self):
        entered.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            # What redis-py can do to a cancellation that lands mid-command.
            raise ConnectionError("Connection closed by server.") from None

    monkeypatch.setattr(fanout.Hub, "sweep", swallowing_sweep)
    monkeypatch.setattr("django.conf.settings.CHAT_SWEEP_INTERVAL", 0.01)
    hub = fanout.hub()
    task = asyncio.get_running_loop().create_task(hub._sweep_forever())
    await asyncio.wait_for(entered.wait(), 3)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=3)
    assert task in done and task.cancelled()


async def test_the_hub_sweeps_unused_uploads_on_a_timer_without_any_upload(ws, settings, media_root, alice, bob, lobby):
    """The contract's "removed after a day" without cron and without uploads: the hub loop sweeps every interval."""
    from datetime import timedelta

    from django.utils import timezone

    from messaging.attachments import attachment_create
    from messaging.models import Attachment
    from tests.attachments import png_upload

    @database_sync_to_async
    def old_upload(name):
        attachment = attachment_create(room=lobby, uploader=bob, upload=png_upload(name))
        Attachment.objects.filter(pk=attachment.pk).update(created_at=timezone.now() - timedelta(hours=25))
        return media_root / attachment.file.name

    paths = [await old_upload(f"old{i}.png") for i in range(3)]
    settings.CHAT_SWEEP_INTERVAL = 0.05
    settings.CHAT_UPLOAD_SWEEP_INTERVAL = 0.2
    async with ws(alice):  # any socket starts this process's hub; nobody uploads from here on
        deadline = time.monotonic() + 10
        while any(p.exists() for p in paths) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert not any(p.exists() for p in paths)
        assert not await database_sync_to_async(Attachment.objects.exists)()


async def test_a_failing_upload_sweep_is_logged_and_retried(ws, settings, monkeypatch, caplog, alice):
    """A database outage during the sweep must not stop the hub's loop: the next interval tries again."""
    calls = []

    def flaky(*, force=False):
        calls.append(force)
        if len(calls) == 1:
            raise RuntimeError("database is down")
        return 0

    monkeypatch.setattr(fanout, "sweep_unused_uploads", flaky)
    settings.CHAT_SWEEP_INTERVAL = 0.05
    settings.CHAT_UPLOAD_SWEEP_INTERVAL = 0.1
    async with ws(alice):
        deadline = time.monotonic() + 10
        while len(calls) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        hub = fanout.hub()
        assert len(calls) >= 2 and calls[0] is True
        assert hub.sweeper is not None and not hub.sweeper.done()
    assert "sweeping unused uploads failed" in caplog.text

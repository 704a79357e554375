"""Where the time of one send goes, measured without websockets.

Run by `bench/run.py` against `bench_chat` (DATABASE_URL set by the harness):

1. the SQL statements of one `message_create` (the REST path, and the
   websocket path before group commit), counted with CaptureQueriesContext;
2. the service time per send, sequentially: as is (with the on-commit
   broadcast through `async_to_sync(group_send)` to Redis), and with the
   broadcast stubbed out in this process only, to split the two;
3. the same statements in raw psycopg, one transaction per message, and 20
   messages per transaction (what group commit would pay);
4. `database_sync_to_async`: the cost of one hop, and how many calls run at
   once (20 concurrent calls that each sleep 10 ms);
5. with group commit (`messages_create`, if the code has it): queries and
   time per message for batches of 1 and 20 (broadcast collected, not sent).

Prints one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

# The chat server's code: this checkout, or the one the harness was pointed at.
ROOT = Path(os.environ.get("BENCH_APP_DIR") or Path(__file__).resolve().parent.parent)
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

import django  # noqa: E402

django.setup()

from channels.db import database_sync_to_async  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

import messaging.services as services  # noqa: E402
from accounts.models import User  # noqa: E402
from messaging.serializers import message_to_dict  # noqa: E402
from rooms.models import Room  # noqa: E402

N = int(os.environ.get("PROBE_N", "300"))


def one_send(room_id: int, user: User) -> None:
    # Exactly what messaging.db.send_message runs on the database thread.
    room = Room.objects.get(pk=room_id)
    message, _ = services.message_create(room=room, author=user, body="probe message body", client_id=uuid.uuid4().hex)
    message_to_dict(message, room_slug=room.slug)


def per_call_ms(fn, n: int) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return round((time.perf_counter() - started) / n * 1000, 3)


def raw_sql(room_id: int, user_id: int, n: int, per_tx: int) -> float:
    """The statements of a send, straight through psycopg; ms per message."""
    started = time.perf_counter()
    for _ in range(n // per_tx):
        with connection.cursor() as cur, django_tx():
            cur.execute("SELECT last_seq FROM rooms_room WHERE id = %s FOR UPDATE", [room_id])
            seq = cur.fetchone()[0]
            for _ in range(per_tx):
                seq += 1
                cur.execute(
                    "INSERT INTO messaging_message (room_id, seq, author_id, body, client_id, created_at)"
                    " VALUES (%s, %s, %s, %s, %s, now()) RETURNING id",
                    [room_id, seq, user_id, "probe message body", uuid.uuid4().hex],
                )
            cur.execute("UPDATE rooms_room SET last_seq = %s WHERE id = %s", [seq, room_id])
            cur.execute(
                "UPDATE rooms_membership SET last_read_seq = %s WHERE room_id = %s AND user_id = %s",
                [seq, room_id, user_id],
            )
    return round((time.perf_counter() - started) / n * 1000, 3)


def django_tx():  # type: ignore[no-untyped-def]
    from django.db import transaction

    return transaction.atomic()


def batch_probe(user: User) -> dict[str, object]:
    """Group commit, when the code has it (`messages_create`): queries and ms per message by batch size."""
    if not hasattr(services, "messages_create"):
        return {"group_commit": False}
    rooms = list(Room.objects.filter(slug__startswith="bench-sat-").order_by("pk"))
    out: dict[str, object] = {"group_commit": True}

    def batch(size: int, spread: bool) -> None:
        requests = [
            services.NewMessage(
                room_id=rooms[i % len(rooms)].pk if spread else rooms[0].pk,
                author=user,
                body="probe message body",
                client_id=uuid.uuid4().hex,
            )
            for i in range(size)
        ]
        events: list[object] = []
        # The message dicts (what the writer acks and broadcasts) come back built.
        services.messages_create(requests=requests, publish=events.extend)

    for size, spread in ((1, False), (20, True), (20, False)):
        label = f"batch_{size}_{'20_rooms' if spread else '1_room'}" if size > 1 else "batch_1"
        with CaptureQueriesContext(connection) as ctx:
            batch(size, spread)
        rounds = max(3, N // size // 2)
        ms = per_call_ms(lambda size=size, spread=spread: batch(size, spread), rounds)
        out[label] = {"queries": len(ctx.captured_queries), "ms_per_batch": ms, "ms_per_message": round(ms / size, 3)}
    return out


async def hops() -> dict[str, float]:
    noop = database_sync_to_async(lambda: None)
    for _ in range(50):
        await noop()
    started = time.perf_counter()
    for _ in range(1000):
        await noop()
    hop_us = (time.perf_counter() - started) / 1000 * 1e6
    sleeper = database_sync_to_async(lambda: time.sleep(0.01))
    started = time.perf_counter()
    await asyncio.gather(*(sleeper() for _ in range(20)))
    elapsed = time.perf_counter() - started
    # 20 calls of 10 ms: 0.2 s if one at a time, ~0.01 s if all at once.
    return {"hop_us": round(hop_us, 1), "twenty_10ms_calls_s": round(elapsed, 3), "concurrent": round(0.2 / elapsed, 1)}


def main() -> None:
    room = Room.objects.get(slug="bench-sat-0")
    user = User.objects.get(username="bench-u00001")
    with CaptureQueriesContext(connection) as ctx:
        one_send(room.pk, user)
    statements = [q["sql"][:120] for q in ctx.captured_queries]
    for _ in range(20):
        one_send(room.pk, user)
    as_is = [per_call_ms(lambda: one_send(room.pk, user), N // 3) for _ in range(3)]
    real_broadcast = services.group_send_sync
    services.group_send_sync = lambda group, event: None  # type: ignore[assignment]
    no_broadcast = [per_call_ms(lambda: one_send(room.pk, user), N // 3) for _ in range(3)]
    services.group_send_sync = real_broadcast
    raw_1 = raw_sql(room.pk, user.pk, N, 1)
    raw_20 = raw_sql(room.pk, user.pk, N, 20)
    hop = asyncio.run(hops())
    try:
        batches = batch_probe(user)
    except Exception as exc:  # the service API is moving; report, do not fail the run
        batches = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    send_ms = statistics.median(as_is)
    summary = {
        "queries_per_send": len(statements),
        "send_ms": send_ms,
        "send_ms_without_broadcast": statistics.median(no_broadcast),
        "broadcast_ms": round(send_ms - statistics.median(no_broadcast), 3),
        "raw_sql_ms_per_msg_1_per_tx": raw_1,
        "raw_sql_ms_per_msg_20_per_tx": raw_20,
        "db_thread_ceiling_msgs_per_s": round(1000 / send_ms, 1),
        **hop,
    }
    print(json.dumps({"summary": summary, "batches": batches, "statements": statements}))


if __name__ == "__main__":
    main()

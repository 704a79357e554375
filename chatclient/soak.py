"""A longer run by hand: thousands of messages through two daphne processes, one killed midway.

    DATABASE_URL=postgres://root@127.0.0.1:5432/root REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python -m chatclient.soak --messages 3000 --clients 6

It creates a dedicated database (`chat_mp_<random>`, dropped at the end) and
takes an empty Redis DB number (flushed at the end), starts two daphne
processes, connects `--clients` reference clients (half on each process, each
failing over to the other), sends `--messages` messages with a few in flight
per client, `kill -9`s the first process when half have been acknowledged,
and then prints what reached the database and the clients as JSON. The exit
status is 0 only if nothing was lost, duplicated or reordered.

It reuses the integration tests' process helpers, so run it from the
repository root.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import sys
import time
from collections import Counter
from typing import Any

from .client import ChatClient


async def soak(*, messages: int, clients: int, in_flight: int, room: str) -> dict[str, Any]:
    from tests.integration.servers import Backends, Daphne

    backends = Backends(os.environ["DATABASE_URL"], os.environ["REDIS_URL"]).setup()
    servers: list[Daphne] = []
    try:
        users = [f"soak{i}" for i in range(clients)]
        tokens = backends.seed(users, [room])
        a, b = Daphne(backends.env()).start(), Daphne(backends.env()).start()
        servers += [a, b]
        pool = [
            ChatClient([first.ws_url, second.ws_url], tokens[user], rooms={room: 0}, backoff=(0.05, 1.0))
            for user, (first, second) in zip(users, itertools.cycle([(a, b), (b, a)]), strict=False)
        ]
        for client in pool:
            await client.start()
        for client in pool:
            await client.wait_ready()

        numbers = iter(range(messages))
        sent = 0
        acked = 0
        killed_at: float | None = None
        started = time.monotonic()

        async def worker(client: ChatClient) -> None:
            nonlocal sent, acked, killed_at
            for n in numbers:
                sent += 1
                await client.send(room, f"soak message {n}")
                acked += 1
                if killed_at is None and acked >= messages // 2:
                    killed_at = time.monotonic()
                    a.kill()

        workers = [asyncio.ensure_future(worker(c)) for c in pool for _ in range(in_flight)]
        _done, stuck = await asyncio.wait(workers, timeout=max(120, messages / 10))
        for task in stuck:
            task.cancel()
        send_seconds = time.monotonic() - started
        history = backends.history(room)
        last = len(history)
        for client in pool:
            # One that never catches up is reported below as differing from history.
            with contextlib.suppress(TimeoutError):
                await client.wait_for_seq(room, last, within=60)
        unacknowledged = sum(len(c.unacknowledged) for c in pool)
        for client in pool:
            await client.stop()

        seqs = [row[0] for row in history]
        per_client_id = Counter(row[2] for row in history)
        acked_ids = {cid for c in pool for cid in c.acked}
        expected = [(row[0], row[1]) for row in history]
        return {
            "messages_sent": sent,
            "acknowledged": acked,
            "acknowledged_distinct_client_ids": len(acked_ids),
            "unacknowledged_at_end": unacknowledged,
            "found_in_history": sum(1 for cid in acked_ids if per_client_id[cid] >= 1),
            "history_rows": last,
            "duplicates_in_history": sum(n - 1 for n in per_client_id.values() if n > 1),
            "gaps_in_history": sum(1 for x, y in itertools.pairwise(seqs) if y != x + 1) + (seqs[:1] not in ([], [1])),
            "duplicates_received": sum(len(c.rooms[room].duplicates) for c in pool),
            "gaps_received": sum(len(c.rooms[room].gaps) for c in pool),
            "clients_identical_to_history": sum(
                1 for c in pool if [(m["seq"], m["id"]) for m in c.rooms[room].messages] == expected
            ),
            "clients": len(pool),
            "reconnections": sum(c.connections - 1 for c in pool),
            "send_seconds": round(send_seconds, 1),
            "killed_after_seconds": round(killed_at - started, 1) if killed_at else None,
        }
    finally:
        for server in servers:
            server.stop()
        backends.teardown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--in-flight", type=int, default=3, help="concurrent unacknowledged sends per client")
    parser.add_argument("--room", default="soak")
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres") or not os.environ.get("REDIS_URL"):
        sys.exit("set DATABASE_URL (PostgreSQL) and REDIS_URL: two processes need both")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    report = asyncio.run(soak(messages=args.messages, clients=args.clients, in_flight=args.in_flight, room=args.room))
    print(json.dumps(report, indent=2))
    ok = (
        report["acknowledged"] == report["messages_sent"] == report["found_in_history"] == report["history_rows"]
        and report["duplicates_in_history"] == report["gaps_in_history"] == 0
        and report["duplicates_received"] == report["gaps_received"] == 0
        and report["clients_identical_to_history"] == report["clients"]
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

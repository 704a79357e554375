"""Prepare the benchmark database (never the dev or test ones).

Run by `bench/run.py` with DATABASE_URL pointing at `bench_chat`:

    python bench/setup_db.py '{"users": 1100, "history": 1000000}'

Migrates, creates the benchmark users with API tokens (idempotent), empties
the fan-out/saturation rooms, and fills a history room with N messages by a
single INSERT ... SELECT generate_series (kept between runs: a room that
already holds N messages is reused). Prints one JSON line: tokens and rooms.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

# The chat server's code: this checkout, or the one the harness was pointed at.
ROOT = Path(os.environ.get("BENCH_APP_DIR") or Path(__file__).resolve().parent.parent)
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from rest_framework.authtoken.models import Token  # noqa: E402

from accounts.models import User  # noqa: E402
from rooms.models import Membership, Room  # noqa: E402

FANOUT_ROOMS = [f"bench-fan-{i}" for i in range(10)]
BIG_ROOM = "bench-big"
HUGE_ROOM = "bench-big-1000"  # 1 room x 1,000 listeners, one user each
SAT_ROOMS = [f"bench-sat-{i}" for i in range(20)]


def ensure_users(count: int) -> list[str]:
    names = [f"bench-u{i:05d}" for i in range(count)]
    existing = set(User.objects.filter(username__in=names).values_list("username", flat=True))
    User.objects.bulk_create(
        [User(username=n, display_name=f"Bench {n[-5:]}", password="!unusable") for n in names if n not in existing]
    )
    users = {u.username: u for u in User.objects.filter(username__in=names)}
    have = set(Token.objects.filter(user__in=users.values()).values_list("user__username", flat=True))
    for name in names:
        if name not in have:
            Token.objects.create(user=users[name])
    tokens = dict(Token.objects.filter(user__in=users.values()).values_list("user__username", "key"))
    return [tokens[n] for n in names]


def reset_rooms(slugs: list[str]) -> None:
    owner = User.objects.get(username="bench-u00000")
    for slug in slugs:
        Room.objects.get_or_create(slug=slug, defaults={"name": slug, "created_by": owner})
    rooms = Room.objects.filter(slug__in=slugs)
    with transaction.atomic():
        with connection.cursor() as cur:
            cur.execute("DELETE FROM messaging_message WHERE room_id = ANY(%s)", [[r.pk for r in rooms]])
        Membership.objects.filter(room__in=rooms).delete()
        rooms.update(last_seq=0, is_locked=False)


def ensure_history(depth: int) -> dict[str, object]:
    slug = f"bench-history-{depth}"
    author = User.objects.get(username="bench-u00000")
    room, _ = Room.objects.get_or_create(slug=slug, defaults={"name": slug, "created_by": author})
    started = time.perf_counter()
    if room.last_seq != depth:
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute("DELETE FROM messaging_message WHERE room_id = %s", [room.pk])
            cur.execute(
                """
                INSERT INTO messaging_message (room_id, seq, author_id, body, client_id, created_at)
                SELECT %s, g, %s, 'history message number ' || g || ' with some ordinary chat text',
                       NULL, now() - make_interval(secs => %s - g)
                FROM generate_series(1, %s) AS g
                """,
                [room.pk, author.pk, depth, depth],
            )
            cur.execute("UPDATE rooms_room SET last_seq = %s WHERE id = %s", [depth, room.pk])
        with connection.cursor() as cur:
            cur.execute("ANALYZE messaging_message")
        filled = True
    else:
        filled = False
    Membership.objects.get_or_create(room=room, user=author)
    return {"slug": slug, "depth": depth, "filled": filled, "seconds": round(time.perf_counter() - started, 1)}


def main() -> None:
    cfg = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    call_command("migrate", verbosity=0, interactive=False)
    tokens = ensure_users(cfg.get("users", 400))
    reset_rooms([*FANOUT_ROOMS, BIG_ROOM, HUGE_ROOM, *SAT_ROOMS])
    history = ensure_history(cfg["history"]) if cfg.get("history") else None
    print(
        json.dumps(
            {
                "tokens": tokens,
                "fanout_rooms": FANOUT_ROOMS,
                "big_room": BIG_ROOM,
                "huge_room": HUGE_ROOM,
                "sat_rooms": SAT_ROOMS,
                "history": history,
            }
        )
    )


if __name__ == "__main__":
    main()

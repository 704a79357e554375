"""Seqs are gap-free and assigned in commit order with concurrent writers (real PostgreSQL)."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from messaging.models import Message
from messaging.selectors import messages_page
from messaging.services import message_create
from rooms.models import Room
from tests.factories import UserFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

WRITERS = 8
PER_WRITER = 40


def test_concurrent_writers_get_gap_free_seqs_and_a_poller_never_misses_one(lobby):
    authors = [UserFactory() for _ in range(WRITERS)]
    done = threading.Event()
    seen: list[int] = []
    errors: list[str] = []

    def write(author) -> None:
        try:
            for i in range(PER_WRITER):
                message_create(room=lobby, author=author, body=f"{author.username} {i}", client_id=f"{i}")
        finally:
            connection.close()

    def poll() -> None:
        # A reader paging with after= must see seq N+1 before (or with) N+2:
        # a seq that committed ahead of its predecessor would be skipped forever.
        last = 0
        try:
            while not done.is_set() or last < WRITERS * PER_WRITER:
                for message in messages_page(room=lobby, after=last, limit=200):
                    if message.seq != last + 1:
                        errors.append(f"after {last} the poller saw {message.seq}")
                    last = message.seq
                    seen.append(message.seq)
                if errors:
                    return
        finally:
            connection.close()

    poller = threading.Thread(target=poll)
    poller.start()
    with ThreadPoolExecutor(WRITERS) as pool:
        list(pool.map(write, authors))
    done.set()
    poller.join(timeout=60)

    total = WRITERS * PER_WRITER
    assert errors == []
    assert seen == list(range(1, total + 1))
    assert sorted(Message.objects.filter(room=lobby).values_list("seq", flat=True)) == list(range(1, total + 1))
    assert Room.objects.get(pk=lobby.pk).last_seq == total


def test_racing_retries_with_one_client_id_make_one_message(lobby, bob):
    barrier = threading.Barrier(6)
    results = []

    def send() -> None:
        try:
            barrier.wait()
            results.append(message_create(room=lobby, author=bob, body="once", client_id="retry-me"))
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({m.pk for m, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert Message.objects.filter(room=lobby).count() == 1

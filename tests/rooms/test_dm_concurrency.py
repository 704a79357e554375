"""Two people opening the same DM at once get one room (real PostgreSQL, real concurrent transactions)."""

import threading

import pytest
from django.db import connection

from rooms.models import Membership, Room
from rooms.services import dm_open

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

ROUNDS = 5


def _race(calls) -> list:
    """Run each (actor, usernames) call on its own thread, all released at once."""
    barrier = threading.Barrier(len(calls))
    results: list = []
    errors: list[BaseException] = []

    def open_dm(actor, usernames) -> None:
        try:
            barrier.wait()
            results.append(dm_open(actor=actor, usernames=usernames))
        except BaseException as exc:  # collected and re-raised by the test thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=open_dm, args=call) for call in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    return results


def test_racing_opens_of_one_pair_make_one_room(alice, bob):
    for _ in range(ROUNDS):
        Room.objects.filter(kind=Room.Kind.DM).delete()
        # Each side opens the DM with the other, twice, all at the same moment.
        results = _race([(alice, ["bob"]), (bob, ["alice"]), (alice, ["bob"]), (bob, ["alice"])])
        assert len({room.pk for room, _ in results}) == 1
        assert sum(created for _, created in results) == 1
        assert Room.objects.filter(kind=Room.Kind.DM).count() == 1
        assert Membership.objects.filter(room__kind=Room.Kind.DM).count() == 2


def test_racing_opens_of_a_group_in_any_order_make_one_room(alice, bob, carol):
    results = _race([(alice, ["bob", "carol"]), (bob, ["carol", "alice"]), (carol, ["alice", "bob"])])
    assert len({room.pk for room, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    room = Room.objects.get(kind=Room.Kind.DM)
    assert sorted(room.memberships.values_list("user__username", flat=True)) == ["alice", "bob", "carol"]


def test_openers_that_all_miss_the_lookup_still_share_one_room(alice, bob, monkeypatch):
    """The worst interleaving, forced: every opener looks before anyone has inserted,
    so all of them insert; the unique dm_key lets one win and the rest find its room."""
    from rooms import services

    real_lookup = services.dm_get_by_key
    looked = threading.local()
    integrity_errors: list[str] = []

    def first_lookup_misses(*, key: str):
        if not getattr(looked, "once", False):
            looked.once = True
            return None
        integrity_errors.append(key)  # only reached after a failed insert
        return real_lookup(key=key)

    monkeypatch.setattr(services, "dm_get_by_key", first_lookup_misses)
    results = _race([(alice, ["bob"]), (bob, ["alice"]), (alice, ["bob"]), (bob, ["alice"])])
    assert len({room.pk for room, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert len(integrity_errors) == 3
    assert Room.objects.filter(kind=Room.Kind.DM).count() == 1

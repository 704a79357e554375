"""Direct messages in the service layer: opening one, and no owner powers in it."""

import re

import pytest

from common.errors import BadRequest, Forbidden, NotFound
from messaging.selectors import messages_search
from messaging.services import message_create
from rooms.models import SLUG_RE, Ban, Membership, Room
from rooms.selectors import room_check_readable, room_get_visible, rooms_readable_by, rooms_visible_to
from rooms.serializers import room_to_dict
from rooms.services import (
    DM_MAX_OTHERS,
    dm_open,
    membership_add,
    membership_set_role,
    read_marker_set,
    room_ban,
    room_join,
    room_leave,
    room_unban,
    room_update,
    rooms_set_locked,
)
from tests.factories import DmFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_opening_creates_a_private_dm_once_for_that_set_of_people(alice, bob):
    room, created = dm_open(actor=alice, usernames=["bob"])
    assert created
    assert (room.kind, room.is_private, room.is_locked, room.last_seq) == ("dm", True, False, 0)
    assert re.fullmatch(SLUG_RE, room.slug) and room.slug.startswith("dm-")
    assert room.dm_key == f"{min(alice.pk, bob.pk)},{max(alice.pk, bob.pk)}"
    # Everyone is a plain member: no owner, no moderators.
    assert sorted(room.memberships.values_list("user__username", "role")) == [("alice", "member"), ("bob", "member")]

    again, created = dm_open(actor=alice, usernames=["bob"])
    assert (again.pk, created) == (room.pk, False)
    # Whoever opens it.
    from_bob, created = dm_open(actor=bob, usernames=["alice"])
    assert (from_bob.pk, created) == (room.pk, False)
    assert Room.objects.filter(kind="dm").count() == 1


def test_the_set_decides_the_room_not_the_order_or_duplicates(alice, bob, carol):
    group, created = dm_open(actor=alice, usernames=["carol", "bob"])
    assert created
    assert dm_open(actor=carol, usernames=["bob", "alice"]) == (group, False)
    assert dm_open(actor=bob, usernames=["alice", "carol", "alice", "bob"]) == (group, False)
    pair, created = dm_open(actor=alice, usernames=["bob", "bob"])
    assert created and pair.pk != group.pk
    assert Membership.objects.filter(room=group).count() == 3


def test_eight_others_is_the_most(alice):
    others = [UserFactory() for _ in range(DM_MAX_OTHERS + 1)]
    room, created = dm_open(actor=alice, usernames=[u.username for u in others[:DM_MAX_OTHERS]])
    assert created and room.memberships.count() == DM_MAX_OTHERS + 1
    with pytest.raises(BadRequest, match="at most 8"):
        dm_open(actor=alice, usernames=[u.username for u in others])
    assert Room.objects.count() == 1


@pytest.mark.parametrize(
    "usernames",
    [
        [],
        ["alice"],  # oneself
        ["alice", "alice"],
        ["ghost"],
        ["bob", "ghost"],
        ["inactive"],
        ["bo\x00b"],
        ["bob", 7],
    ],
)
def test_bad_participants_are_bad_request_and_store_nothing(alice, bob, usernames):
    UserFactory(username="inactive", is_active=False)
    with pytest.raises(BadRequest):
        dm_open(actor=alice, usernames=usernames)
    assert not Room.objects.filter(kind="dm").exists()


def test_a_deactivated_participant_cannot_be_messaged_again(alice, bob):
    dm_open(actor=alice, usernames=["bob"])
    bob.is_active = False
    bob.save()
    with pytest.raises(BadRequest, match="No such user"):
        dm_open(actor=alice, usernames=["bob"])


def test_each_participant_sees_the_others_names_in_one_query_for_any_number(
    alice, bob, carol, django_assert_num_queries
):
    group, _ = dm_open(actor=alice, usernames=["bob", "carol"])
    pair, _ = dm_open(actor=alice, usernames=["carol"])
    named = {r.slug: r.title for r in rooms_visible_to(user=alice)}
    assert named == {group.slug: "Bob, Carol", pair.slug: "Carol"}
    assert room_get_visible(slug=group.slug, user=carol).title == "Alice, Bob"
    assert room_to_dict(room_get_visible(slug=group.slug, user=bob))["name"] == "Alice, Carol"
    # Outside a viewer's list (e.g. room_updated, the admin) the stored name names everyone.
    assert room_to_dict(Room.objects.get(pk=group.pk))["name"] == "Alice, Bob, Carol"

    # The list costs the same with 2 DMs or 12: the names come in one prefetch.
    with django_assert_num_queries(2):
        assert len([r.title for r in rooms_visible_to(user=alice)]) == 2
    for _ in range(10):
        dm_open(actor=alice, usernames=[UserFactory().username])
    with django_assert_num_queries(2):
        assert len([r.title for r in rooms_visible_to(user=alice)]) == 12


def test_a_dm_is_invisible_and_unreadable_to_everyone_else(alice, bob, carol, dave, bob_carol_dm):
    message_create(room=bob_carol_dm, author=bob, body="launch plans, just between us", rate_limit=False)
    for outsider in (alice, dave):  # staff or not
        assert bob_carol_dm not in rooms_visible_to(user=outsider)
        assert bob_carol_dm not in rooms_readable_by(user=outsider)
        with pytest.raises(NotFound):
            room_get_visible(slug=bob_carol_dm.slug, user=outsider)
        with pytest.raises(NotFound):
            room_check_readable(room=bob_carol_dm, user=outsider)
        with pytest.raises(NotFound):
            room_join(room=bob_carol_dm, user=outsider)
        assert messages_search(user=outsider, query="launch", room=None, limit=10, offset=0) == []
    assert [m.body for m in messages_search(user=carol, query="launch", room=None, limit=10, offset=0)] == [
        "launch plans, just between us"
    ]


def test_participants_join_send_and_read_as_in_a_private_room(bob, carol, bob_carol_dm):
    assert room_join(room=bob_carol_dm, user=carol).role == "member"
    message, created = message_create(room=bob_carol_dm, author=bob, body="hi carol", rate_limit=False)
    assert created and message.seq == 1
    assert room_get_visible(slug=bob_carol_dm.slug, user=carol).unread_count == 1
    assert read_marker_set(room=bob_carol_dm, user=carol, seq=1) == 1


def test_no_owner_powers_in_a_dm_for_participants_or_staff(alice, bob, carol, dave, bob_carol_dm):
    staff = UserFactory(is_staff=True)
    for actor in (bob, staff):
        with pytest.raises(Forbidden, match="direct message"):
            membership_add(room=bob_carol_dm, actor=actor, user=dave)
        with pytest.raises(Forbidden):
            room_update(room=bob_carol_dm, actor=actor, is_locked=True)
        with pytest.raises(Forbidden):
            room_update(room=bob_carol_dm, actor=actor, name="Renamed")
        with pytest.raises(Forbidden):
            room_ban(room=bob_carol_dm, actor=actor, user=carol)
        with pytest.raises(Forbidden):
            room_unban(room=bob_carol_dm, actor=actor, user=carol)
        with pytest.raises(Forbidden):
            membership_set_role(room=bob_carol_dm, actor=actor, user=carol, role="moderator")
    bob_carol_dm.refresh_from_db()
    assert (bob_carol_dm.is_locked, bob_carol_dm.name) == (False, "Bob, Carol")
    assert not Ban.objects.exists()
    assert sorted(bob_carol_dm.memberships.values_list("user__username", "role")) == [
        ("bob", "member"),
        ("carol", "member"),
    ]


def test_outsiders_learn_nothing_from_owner_powers(dave, bob, bob_carol_dm):
    for attempt in (
        lambda: membership_add(room=bob_carol_dm, actor=dave, user=dave),
        lambda: room_update(room=bob_carol_dm, actor=dave, is_locked=True),
        lambda: room_ban(room=bob_carol_dm, actor=dave, user=bob),
        lambda: membership_set_role(room=bob_carol_dm, actor=dave, user=bob, role="moderator"),
        lambda: room_leave(room=bob_carol_dm, user=dave),
    ):
        with pytest.raises(NotFound):
            attempt()


def test_nobody_leaves_a_dm(bob, bob_carol_dm):
    with pytest.raises(Forbidden, match="cannot leave a direct message"):
        room_leave(room=bob_carol_dm, user=bob)
    assert bob_carol_dm.memberships.count() == 2


def test_staff_bulk_lock_leaves_dms_alone(alice, bob, lobby, bob_carol_dm):
    assert rooms_set_locked(actor=alice, room_ids=[lobby.pk, bob_carol_dm.pk], locked=True) == 1
    assert list(Room.objects.filter(is_locked=True).values_list("slug", flat=True)) == ["lobby"]
    with pytest.raises(Forbidden):
        rooms_set_locked(actor=bob, room_ids=[lobby.pk], locked=False)


def test_the_database_refuses_a_dm_without_its_key():
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        Room.objects.create(slug="dm-broken", name="x", kind=Room.Kind.DM, is_private=True)
    with pytest.raises(IntegrityError), transaction.atomic():
        DmFactory(is_private=False)

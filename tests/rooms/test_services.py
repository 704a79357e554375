import pytest

from common.errors import BadRequest, Forbidden, NotFound
from messaging.services import message_create
from rooms.models import Ban, Membership
from rooms.selectors import room_check_moderator, room_get_visible, rooms_visible_to
from rooms.services import (
    membership_add,
    membership_set_role,
    read_marker_set,
    room_ban,
    room_create,
    room_join,
    room_leave,
    room_unban,
    room_update,
)

pytestmark = pytest.mark.django_db


def test_create_makes_the_creator_owner(bob):
    room = room_create(creator=bob, slug="book-club", name=" Book club ", description="Reading")
    assert (room.name, room.last_seq) == ("Book club", 0)
    assert Membership.objects.get(room=room, user=bob).role == "owner"


@pytest.mark.parametrize("slug", ["", "-lead", "UPPER", "sp ace", "x" * 51, "ünï"])
def test_create_rejects_bad_slugs(bob, slug):
    with pytest.raises(BadRequest):
        room_create(creator=bob, slug=slug, name="x")


def test_taken_slug_is_bad_request(bob, lobby):
    with pytest.raises(BadRequest, match="taken"):
        room_create(creator=bob, slug="lobby", name="Again")


def test_join_public_sets_marker_at_last_seq_and_private_is_not_found(alice, bob, lobby, private_room):
    message_create(room=lobby, author=alice, body="hi")
    assert room_join(room=lobby, user=bob).last_read_seq == 1
    assert room_join(room=lobby, user=bob).last_read_seq == 1  # idempotent
    with pytest.raises(NotFound):
        room_join(room=private_room, user=bob)


def test_leave_and_owner_cannot_leave(alice, bob, lobby):
    room_join(room=lobby, user=bob)
    room_leave(room=lobby, user=bob)
    assert not Membership.objects.filter(room=lobby, user=bob).exists()
    with pytest.raises(Forbidden):
        room_leave(room=lobby, user=alice)


def test_visible_rooms_and_unread_counts(alice, bob, lobby, private_room):
    room_join(room=lobby, user=bob)
    for i in range(3):
        message_create(room=lobby, author=alice, body=str(i))
    rooms = {r.slug: r for r in rooms_visible_to(user=bob)}
    assert set(rooms) == {"lobby"}
    assert (rooms["lobby"].is_member, rooms["lobby"].unread_count) == (True, 3)
    read_marker_set(room=lobby, user=bob, seq=2)
    assert room_get_visible(slug="lobby", user=bob).unread_count == 1
    mine = {r.slug: r for r in rooms_visible_to(user=alice)}
    assert set(mine) == {"lobby", "staff"}
    assert mine["lobby"].unread_count == 0  # sending marks read
    with pytest.raises(NotFound):
        room_get_visible(slug="staff", user=bob)


def test_read_marker_moves_forward_only_and_caps(alice, bob, lobby):
    room_join(room=lobby, user=bob)
    message_create(room=lobby, author=alice, body="x")
    assert read_marker_set(room=lobby, user=bob, seq=50) == 1
    assert read_marker_set(room=lobby, user=bob, seq=0) == 1
    with pytest.raises(BadRequest):
        read_marker_set(room=lobby, user=bob, seq=-1)


def test_moderation_rights(alice, bob, carol, private_room):
    with pytest.raises(NotFound):
        room_update(room=private_room, actor=bob, is_locked=True)
    membership_add(room=private_room, actor=alice, user=bob)
    with pytest.raises(Forbidden):
        room_update(room=private_room, actor=bob, is_locked=True)
    with pytest.raises(Forbidden):
        membership_add(room=private_room, actor=bob, user=carol)
    with pytest.raises(Forbidden):
        membership_set_role(room=private_room, actor=bob, user=bob, role="moderator")
    membership_set_role(room=private_room, actor=alice, user=bob, role="moderator")
    assert room_check_moderator(room=private_room, user=bob).role == "moderator"
    assert room_update(room=private_room, actor=bob, is_locked=True, name="Ops").is_locked
    membership_add(room=private_room, actor=bob, user=carol)
    with pytest.raises(BadRequest):
        membership_set_role(room=private_room, actor=alice, user=alice, role="member")
    with pytest.raises(BadRequest):
        membership_set_role(room=private_room, actor=alice, user=bob, role="owner")


def test_bans(alice, bob, carol, lobby):
    room_join(room=lobby, user=bob)
    room_join(room=lobby, user=carol)
    with pytest.raises(Forbidden):
        room_ban(room=lobby, actor=carol, user=bob)
    with pytest.raises(Forbidden):
        room_ban(room=lobby, actor=bob, user=alice)
    room_ban(room=lobby, actor=alice, user=bob)
    assert Ban.objects.filter(room=lobby, user=bob).exists()
    assert not Membership.objects.filter(room=lobby, user=bob).exists()
    with pytest.raises(Forbidden):
        room_join(room=lobby, user=bob)
    room_unban(room=lobby, actor=alice, user=bob)
    room_join(room=lobby, user=bob)
    with pytest.raises(NotFound):
        room_unban(room=lobby, actor=alice, user=bob)


def test_staff_moderate_private_rooms_they_are_not_in(alice, bob, private_room):
    from tests.factories import UserFactory

    staff = UserFactory(is_staff=True)
    assert room_update(room=private_room, actor=staff, is_locked=True).is_locked
    membership_add(room=private_room, actor=staff, user=bob)
    room_ban(room=private_room, actor=staff, user=bob)
    room_unban(room=private_room, actor=staff, user=bob)

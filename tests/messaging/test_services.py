import pytest

from common.errors import BadRequest, Forbidden, NotFound, RoomLocked, TooLong
from messaging.models import Message
from messaging.services import message_create, message_delete, message_edit
from rooms.models import Membership, Room
from rooms.services import room_ban
from tests.factories import MembershipFactory, RoomFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_seq_starts_at_one_and_counts_per_room(alice, lobby):
    other = RoomFactory(created_by=alice)
    seqs = [message_create(room=lobby, author=alice, body=f"m{i}")[0].seq for i in range(3)]
    assert seqs == [1, 2, 3]
    assert message_create(room=other, author=alice, body="x")[0].seq == 1
    lobby.refresh_from_db()
    assert lobby.last_seq == 3


def test_body_is_trimmed_and_limited_in_code_points(alice, lobby, settings):
    message, created = message_create(room=lobby, author=alice, body="\n  hello  \t")
    assert created and message.body == "hello"
    assert message_create(room=lobby, author=alice, body="😀" * settings.CHAT_MAX_BODY)[0].body
    with pytest.raises(TooLong):
        message_create(room=lobby, author=alice, body="a" * (settings.CHAT_MAX_BODY + 1))
    with pytest.raises(BadRequest):
        message_create(room=lobby, author=alice, body="   ")
    with pytest.raises(BadRequest):
        message_create(room=lobby, author=alice, body=None)


def test_idempotent_per_room_author_client_id(alice, bob, lobby):
    first, created = message_create(room=lobby, author=alice, body="hi", client_id="k")
    again, created_again = message_create(room=lobby, author=alice, body="changed", client_id="k")
    assert created and not created_again
    assert (again.pk, again.seq, again.body) == (first.pk, first.seq, "hi")
    # The same client_id from another author, or in another room, is a new message.
    assert message_create(room=lobby, author=bob, body="hi", client_id="k")[1]
    assert message_create(room=RoomFactory(created_by=alice), author=alice, body="hi", client_id="k")[1]
    assert Message.objects.count() == 3


def test_nothing_broadcast_until_commit(alice, lobby, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        message_create(room=lobby, author=alice, body="x", client_id="a")
        message_create(room=lobby, author=alice, body="x", client_id="a")  # repeat: no broadcast
    assert len(callbacks) == 1


def test_locked_private_and_banned(alice, bob, carol, lobby, private_room):
    with pytest.raises(NotFound):
        message_create(room=private_room, author=bob, body="let me in")
    lobby.is_locked = True
    lobby.save()
    with pytest.raises(RoomLocked):
        message_create(room=lobby, author=alice, body="x")
    lobby.is_locked = False
    lobby.save()
    room_ban(room=lobby, actor=alice, user=carol)
    with pytest.raises(Forbidden):
        message_create(room=lobby, author=carol, body="x")
    assert Message.objects.count() == 0


def test_sending_to_a_public_room_joins_and_marks_read(alice, bob, lobby):
    message_create(room=lobby, author=alice, body="one")
    message_create(room=lobby, author=bob, body="two")
    membership = Membership.objects.get(room=lobby, user=bob)
    assert (membership.role, membership.last_read_seq) == ("member", 2)


def test_edit_by_author_only(alice, bob, lobby):
    message, _ = message_create(room=lobby, author=bob, body="tpyo")
    with pytest.raises(Forbidden):
        message_edit(message=message, actor=alice, body="nope")
    edited = message_edit(message=message, actor=bob, body=" typo ")
    assert edited.body == "typo" and edited.edited_at is not None


def test_delete_by_author_moderator_or_staff_keeps_seq(alice, bob, carol, lobby):
    m1, _ = message_create(room=lobby, author=bob, body="a")
    m2, _ = message_create(room=lobby, author=bob, body="b")
    m3, _ = message_create(room=lobby, author=bob, body="c")
    with pytest.raises(Forbidden):
        message_delete(message=m1, actor=carol)
    assert message_delete(message=m1, actor=bob).is_deleted
    MembershipFactory(room=lobby, user=carol, role=Membership.Role.MODERATOR)
    assert message_delete(message=m2, actor=carol).is_deleted
    staff = UserFactory(is_staff=True)
    deleted = message_delete(message=m3, actor=staff)
    assert (deleted.seq, deleted.deleted_by) == (3, staff)
    assert list(Message.objects.values_list("seq", flat=True)) == [1, 2, 3]
    with pytest.raises(BadRequest):
        message_edit(message=m1, actor=bob, body="resurrect")


def test_delete_in_a_foreign_private_room_is_not_found(alice, bob, private_room):
    message, _ = message_create(room=private_room, author=alice, body="secret")
    with pytest.raises(NotFound):
        message_delete(message=message, actor=bob)


def test_room_last_seq_not_editable_through_forms():
    assert not Room._meta.get_field("last_seq").editable


def test_batch_answers_each_request_on_its_own(alice, bob, lobby, private_room, django_capture_on_commit_callbacks):
    from common.errors import NotFound as NotFoundError
    from messaging.services import NewMessage, messages_create

    locked = RoomFactory(created_by=alice, is_locked=True)
    committed, _ = message_create(room=lobby, author=bob, body="earlier", client_id="old")
    requests = [
        NewMessage(room_id=lobby.pk, author=alice, body="one", client_id="a"),
        NewMessage(room_id=lobby.pk, author=alice, body="", client_id="b"),
        NewMessage(room_id=locked.pk, author=alice, body="x", client_id="c"),
        NewMessage(room_id=private_room.pk, author=bob, body="x", client_id="d"),
        NewMessage(room_id=lobby.pk, author=bob, body="retry", client_id="old"),
        NewMessage(room_id=lobby.pk, author=alice, body="one again", client_id="a"),
        NewMessage(room_id=lobby.pk, author=bob, body="two", client_id=None),
        NewMessage(room_id=private_room.pk, author=alice, body="private", client_id="e"),
    ]
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        results = messages_create(requests=requests)
    assert [type(r.error) for r in results] == [
        type(None),
        BadRequest,
        RoomLocked,
        NotFoundError,
        type(None),
        type(None),
        type(None),
        type(None),
    ]
    assert [(r.data["seq"] if r.data else None, r.created) for r in results] == [
        (2, True),
        (None, False),
        (None, False),
        (None, False),
        (1, False),
        (2, False),
        (3, True),
        (1, True),
    ]
    assert results[4].message_id == committed.pk
    assert results[5].message_id == results[0].message_id is not None
    assert len(callbacks) == 1  # one on_commit for the whole batch
    lobby.refresh_from_db()
    assert lobby.last_seq == 3


def test_batch_broadcasts_in_seq_order(alice, lobby, django_capture_on_commit_callbacks):
    from messaging.services import NewMessage, messages_create

    published = []
    with django_capture_on_commit_callbacks(execute=True):
        messages_create(
            requests=[NewMessage(room_id=lobby.pk, author=alice, body=str(i), client_id=str(i)) for i in range(5)],
            publish=published.extend,
        )
    assert [event["seq"] for _, event in published] == [1, 2, 3, 4, 5]
    assert {group for group, _ in published} == {lobby.group_name}


def test_nul_characters_are_bad_input_not_an_outage(alice, lobby):
    with pytest.raises(BadRequest):
        message_create(room=lobby, author=alice, body="a\x00b")
    with pytest.raises(BadRequest):
        message_create(room=lobby, author=alice, body="ok", client_id="a\x00")

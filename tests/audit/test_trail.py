"""Every moderation action writes exactly one audit entry, with the path it came by, in its own transaction."""

import pytest
from asgiref.sync import sync_to_async
from django.db import transaction
from django.test import Client

from accounts.models import User
from accounts.services import user_set_active
from audit.context import entry_path
from audit.models import AuditEntry
from common.errors import BadRequest, Forbidden
from messaging.models import Message
from messaging.services import message_create, message_delete, message_restore
from rooms.models import Ban, Membership, Room
from rooms.services import room_ban, room_update
from tests.factories import MembershipFactory, MessageFactory, RoomFactory

Action = AuditEntry.Action


def entries() -> list[AuditEntry]:
    return list(AuditEntry.objects.order_by("id"))


def only_entry() -> AuditEntry:
    rows = entries()
    assert len(rows) == 1, [(e.action, e.target, e.path) for e in rows]
    return rows[0]


def admin_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


# --- websocket -------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_websocket_delete_by_a_moderator_is_audited_as_websocket(ws, alice, bob, lobby):
    carol = await sync_to_async(lambda: MembershipFactory(room=lobby, role=Membership.Role.MODERATOR).user)()
    message, _ = await sync_to_async(message_create)(room=lobby, author=bob, body="spam", rate_limit=False)
    async with ws(carol) as c:
        await c.join("lobby")
        await c.send(type="delete", room="lobby", message_id=message.pk, ref="d1")
        frame = await c.recv_type("message_deleted")
        assert frame["message"]["id"] == message.pk and frame["message"]["deleted"] is True
    entry = await sync_to_async(only_entry)()
    assert (entry.action, entry.path, entry.actor_id) == (Action.MESSAGE_DELETED, "websocket", carol.pk)
    assert entry.room_id == lobby.pk and entry.target_user_id == bob.pk and entry.message_id == message.pk
    assert entry.target == f"message #{message.pk} (seq 1) by @bob"


@pytest.mark.django_db(transaction=True)
async def test_websocket_delete_of_ones_own_message_is_not_audited(ws, bob, lobby):
    async with ws(bob) as b:
        await b.join("lobby")
        await b.send(type="send", room="lobby", body="oops", client_id="c1")
        ack = await b.recv_type("ack")
        await b.send(type="delete", room="lobby", message_id=ack["message"]["id"])
        assert (await b.recv_type("message_deleted"))["message"]["id"] == ack["message"]["id"]
    assert await AuditEntry.objects.acount() == 0


@pytest.mark.django_db(transaction=True)
async def test_websocket_delete_refused_writes_nothing(ws, alice, bob, carol, lobby):
    message, _ = await sync_to_async(message_create)(room=lobby, author=alice, body="mine", rate_limit=False)
    other = await sync_to_async(RoomFactory)(slug="other", created_by=alice)
    elsewhere, _ = await sync_to_async(message_create)(room=other, author=alice, body="there", rate_limit=False)
    async with ws(carol) as c:
        await c.join("lobby")
        await c.send(type="delete", room="lobby", message_id=message.pk, ref="r1")
        error = await c.recv_type("error")
        assert (error["code"], error["ref"], error["room"]) == ("forbidden", "r1", "lobby")
        # A message of another room is not found through this room.
        await c.send(type="delete", room="lobby", message_id=elsewhere.pk, ref="r2")
        assert (await c.recv_type("error"))["code"] == "not_found"
        for bad in (None, "1", True, 0, -3):
            await c.send(type="delete", room="lobby", message_id=bad, ref="r3")
            assert (await c.recv_type("error"))["code"] == "bad_request"
        await c.send(type="delete", room="random", message_id=message.pk, ref="r4")
        assert (await c.recv_type("error"))["code"] == "not_joined"
    assert await Message.objects.filter(deleted_at__isnull=False).acount() == 0
    assert await AuditEntry.objects.acount() == 0


# --- REST ------------------------------------------------------------------------


def test_rest_ban_unban_role_member_lock_and_delete_are_audited_as_rest(api, alice, bob, carol, lobby):
    owner = api(alice)
    assert owner.post("/api/rooms/lobby/bans/", {"username": "bob"}).status_code == 201
    entry = only_entry()
    assert (entry.action, entry.path, entry.actor_id, entry.target, entry.target_user_id, entry.room_id) == (
        Action.USER_BANNED,
        "rest",
        alice.pk,
        "@bob",
        bob.pk,
        lobby.pk,
    )
    # Banning again changes nothing, so records nothing.
    assert owner.post("/api/rooms/lobby/bans/", {"username": "bob"}).status_code == 201
    assert len(entries()) == 1
    assert owner.delete("/api/rooms/lobby/bans/bob/").status_code == 204
    assert entries()[-1].action == Action.USER_UNBANNED

    assert owner.post("/api/rooms/lobby/members/", {"username": "carol"}).status_code == 201
    assert entries()[-1].action == Action.MEMBER_ADDED and entries()[-1].target == "@carol"
    assert owner.post("/api/rooms/lobby/members/", {"username": "carol"}).status_code == 200
    assert owner.patch("/api/rooms/lobby/members/carol/", {"role": "moderator"}).status_code == 200
    role = entries()[-1]
    assert (role.action, role.detail, role.target) == (Action.ROLE_CHANGED, "member → moderator", "@carol")
    assert owner.patch("/api/rooms/lobby/members/carol/", {"role": "moderator"}).status_code == 200  # no change
    assert len(entries()) == 4

    moderator = api(carol)
    assert moderator.patch("/api/rooms/lobby/", {"is_locked": True}).status_code == 200
    assert moderator.patch("/api/rooms/lobby/", {"is_locked": True}).status_code == 200  # no change
    assert moderator.patch("/api/rooms/lobby/", {"name": "Hall"}).status_code == 200  # not moderation
    assert moderator.patch("/api/rooms/lobby/", {"is_locked": False}).status_code == 200
    assert [(e.action, e.target, e.actor_id) for e in entries()[-2:]] == [
        (Action.ROOM_LOCKED, "#lobby", carol.pk),
        (Action.ROOM_UNLOCKED, "#lobby", carol.pk),
    ]

    message = MessageFactory(room=lobby, author=alice)
    own = MessageFactory(room=lobby, author=carol)
    assert moderator.delete(f"/api/messages/{own.pk}/").status_code == 200  # her own: not moderation
    assert moderator.delete(f"/api/messages/{message.pk}/").status_code == 200
    assert moderator.delete(f"/api/messages/{message.pk}/").status_code == 200  # already deleted: no-op
    rows = entries()
    assert len(rows) == 7
    assert (rows[-1].action, rows[-1].message_id, rows[-1].target_user_id) == (
        Action.MESSAGE_DELETED,
        message.pk,
        alice.pk,
    )
    assert {e.path for e in rows} == {"rest"}


def test_refused_actions_write_nothing(api, alice, bob, carol, lobby):
    MembershipFactory(room=lobby, user=bob)
    message = MessageFactory(room=lobby, author=alice)
    assert api(bob).post("/api/rooms/lobby/bans/", {"username": "carol"}).status_code == 403
    assert api(bob).patch("/api/rooms/lobby/", {"is_locked": True}).status_code == 403
    assert api(bob).delete(f"/api/messages/{message.pk}/").status_code == 403
    assert api(alice).post("/api/rooms/lobby/bans/", {"username": "alice"}).status_code == 400
    # The lock is set first, then the name is refused: all of it rolls back.
    assert api(alice).patch("/api/rooms/lobby/", {"is_locked": True, "name": "  "}).status_code == 400
    lobby.refresh_from_db()
    assert lobby.is_locked is False
    assert entries() == []


def test_an_action_rolled_back_after_the_service_leaves_no_entry(alice, bob, lobby):
    with pytest.raises(RuntimeError), transaction.atomic():
        room_ban(room=lobby, actor=alice, user=bob)
        raise RuntimeError("the caller's transaction fails after the ban")
    assert not Ban.objects.exists() and entries() == []


def test_a_failing_audit_write_rolls_the_action_back(monkeypatch, alice, lobby):
    def broken(**kwargs):
        raise RuntimeError("audit table unavailable")

    monkeypatch.setattr(AuditEntry.objects, "create", broken)
    with pytest.raises(RuntimeError):
        room_update(room=lobby, actor=alice, is_locked=True)
    lobby.refresh_from_db()
    assert lobby.is_locked is False


def test_a_service_called_outside_any_request_is_audited_as_admin(alice, bob, lobby):
    room_ban(room=lobby, actor=alice, user=bob)
    assert only_entry().path == "admin"
    with entry_path("rest"):
        room_update(room=lobby, actor=alice, is_locked=True)
    assert entries()[-1].path == "rest"


def test_restore_by_a_moderator_is_audited_and_by_the_author_is_not(alice, bob, lobby):
    message, _ = message_create(room=lobby, author=bob, body="hi @alice", rate_limit=False)
    message_delete(message=message, actor=bob)
    restored = message_restore(message=message, actor=alice)
    assert restored.deleted_at is None and restored.html
    entry = only_entry()
    assert (entry.action, entry.message_id, entry.target_user_id) == (Action.MESSAGE_RESTORED, message.pk, bob.pk)
    # Restoring what is not deleted does nothing.
    message_restore(message=message, actor=alice)
    assert len(entries()) == 1


def test_a_member_cannot_restore(alice, bob, carol, lobby):
    message, _ = message_create(room=lobby, author=alice, body="hi", rate_limit=False)
    message_delete(message=message, actor=alice)
    with pytest.raises(Forbidden):
        message_restore(message=message, actor=carol)
    assert Message.objects.get(pk=message.pk).deleted_at is not None


# --- admin -----------------------------------------------------------------------


def test_admin_lock_actions_are_audited_as_admin(alice, lobby):
    client = admin_client(alice)
    response = client.post("/admin/rooms/room/", {"action": "lock_rooms", "_selected_action": [str(lobby.pk)]})
    assert response.status_code == 302
    entry = only_entry()
    assert (entry.action, entry.path, entry.actor_id, entry.room_id) == (
        Action.ROOM_LOCKED,
        "admin",
        alice.pk,
        lobby.pk,
    )
    client.post("/admin/rooms/room/", {"action": "unlock_rooms", "_selected_action": [str(lobby.pk)]})
    assert [e.action for e in entries()] == [Action.ROOM_LOCKED, Action.ROOM_UNLOCKED]


def _room_form(room: Room, **extra) -> dict:
    form = {
        "name": room.name,
        "description": room.description,
        "created_by": str(room.created_by_id),
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
        "bans-TOTAL_FORMS": "0",
        "bans-INITIAL_FORMS": "0",
    }
    form.update(extra)
    return form


def test_admin_room_form_lock_ban_and_members_are_audited_as_admin(alice, bob, carol, dave, lobby):
    client = admin_client(alice)
    url = f"/admin/rooms/room/{lobby.pk}/change/"
    assert client.post(url, _room_form(lobby, is_locked="on")).status_code == 302
    assert only_entry().action == Action.ROOM_LOCKED

    carol_membership = MembershipFactory(room=lobby, user=carol)
    owner = Membership.objects.get(room=lobby, user=alice)
    form = _room_form(
        lobby,
        is_locked="on",
        **{
            "memberships-TOTAL_FORMS": "3",
            "memberships-INITIAL_FORMS": "2",
            "memberships-0-id": str(owner.pk),
            "memberships-0-room": str(lobby.pk),
            "memberships-0-user": str(alice.pk),
            "memberships-0-role": "owner",
            "memberships-1-id": str(carol_membership.pk),
            "memberships-1-room": str(lobby.pk),
            "memberships-1-user": str(carol.pk),
            "memberships-1-role": "moderator",
            "memberships-2-room": str(lobby.pk),
            "memberships-2-user": str(dave.pk),
            "memberships-2-role": "member",
            "bans-TOTAL_FORMS": "1",
            "bans-0-room": str(lobby.pk),
            "bans-0-user": str(bob.pk),
        },
    )
    response = client.post(url, form)
    assert response.status_code == 302, response.content.decode()[:3000]
    rows = entries()[1:]
    assert sorted((e.action, e.target, e.detail) for e in rows) == sorted(
        [
            (Action.ROLE_CHANGED, "@carol", "member → moderator"),
            (Action.MEMBER_ADDED, "@dave", ""),
            (Action.USER_BANNED, "@bob", ""),
        ]
    )
    assert {e.path for e in entries()} == {"admin"}


def test_admin_deactivation_and_reactivation_are_audited_as_admin(alice, bob, carol):
    client = admin_client(alice)
    response = client.post(
        "/admin/accounts/user/", {"action": "deactivate_users", "_selected_action": [str(bob.pk), str(alice.pk)]}
    )
    assert response.status_code == 302
    entry = only_entry()
    assert (entry.action, entry.path, entry.actor_id, entry.target, entry.target_user_id, entry.room_id) == (
        Action.USER_DEACTIVATED,
        "admin",
        alice.pk,
        "@bob",
        bob.pk,
        None,
    )
    assert User.objects.get(pk=bob.pk).is_active is False
    client.post("/admin/accounts/user/", {"action": "activate_users", "_selected_action": [str(bob.pk)]})
    assert entries()[-1].action == Action.USER_REACTIVATED
    assert User.objects.get(pk=bob.pk).is_active is True
    assert len(entries()) == 2


def test_admin_user_form_deactivation_is_audited_once(alice, carol):
    client = admin_client(alice)
    carol.refresh_from_db()
    form = {
        "username": "carol",
        "display_name": "Carol",
        "first_name": "",
        "last_name": "",
        "email": "",
        "date_joined_0": carol.date_joined.strftime("%Y-%m-%d"),
        "date_joined_1": carol.date_joined.strftime("%H:%M:%S"),
        "initial-date_joined_0": carol.date_joined.strftime("%Y-%m-%d"),
        "initial-date_joined_1": carol.date_joined.strftime("%H:%M:%S"),
    }
    response = client.post(f"/admin/accounts/user/{carol.pk}/change/", form)  # "active" unticked
    assert response.status_code == 302, response.content.decode()[:3000]
    assert User.objects.get(pk=carol.pk).is_active is False
    entry = only_entry()
    assert (entry.action, entry.path, entry.target_user_id) == (Action.USER_DEACTIVATED, "admin", carol.pk)
    # Saving again with nothing changed records nothing.
    assert client.post(f"/admin/accounts/user/{carol.pk}/change/", form).status_code == 302
    assert len(entries()) == 1


def test_deactivating_twice_records_once(alice, bob):
    assert user_set_active(user=bob, actor=alice, active=False) is True
    assert user_set_active(user=bob, actor=alice, active=False) is False
    assert [e.action for e in entries()] == [Action.USER_DEACTIVATED]


def test_admin_message_delete_and_restore_are_audited_as_admin(alice, bob, lobby):
    message, _ = message_create(room=lobby, author=bob, body="rude", rate_limit=False)
    client = admin_client(alice)
    client.post("/admin/messaging/message/", {"action": "soft_delete_messages", "_selected_action": [str(message.pk)]})
    client.post("/admin/messaging/message/", {"action": "restore_messages", "_selected_action": [str(message.pk)]})
    assert [(e.action, e.path) for e in entries()] == [
        (Action.MESSAGE_DELETED, "admin"),
        (Action.MESSAGE_RESTORED, "admin"),
    ]
    assert Message.objects.get(pk=message.pk).deleted_at is None


@pytest.mark.django_db(transaction=True)
async def test_admin_restore_reaches_open_sockets(ws, alice, bob, lobby):
    message, _ = await sync_to_async(message_create)(room=lobby, author=bob, body="*back*", rate_limit=False)
    await sync_to_async(message_delete)(message=message, actor=alice)
    client = await sync_to_async(admin_client)(alice)
    async with ws(bob) as b:
        await b.join("lobby")
        response = await sync_to_async(client.post)(
            "/admin/messaging/message/", {"action": "restore_messages", "_selected_action": [str(message.pk)]}
        )
        assert response.status_code == 302
        frame = await b.recv_type("message_updated")
        assert frame["message"]["deleted"] is False and frame["message"]["body"] == "*back*"
        assert "<em>back</em>" in frame["message"]["html"]


def test_audit_admin_is_read_only_and_filters(alice, bob, lobby):
    room_ban(room=lobby, actor=alice, user=bob)
    entry = only_entry()
    client = admin_client(alice)
    for url in (
        "/admin/audit/auditentry/",
        f"/admin/audit/auditentry/?room__id__exact={lobby.pk}",
        f"/admin/audit/auditentry/?actor__id__exact={alice.pk}",
        "/admin/audit/auditentry/?action__exact=user_banned",
        f"/admin/audit/auditentry/?at__year={entry.at.year}",
        f"/admin/audit/auditentry/{entry.pk}/change/",
    ):
        response = client.get(url)
        assert response.status_code == 200, url
        assert "@bob" in response.content.decode(), url
    assert "@bob" not in client.get("/admin/audit/auditentry/?action__exact=room_locked").content.decode()
    assert client.get("/admin/audit/auditentry/add/").status_code == 403
    assert client.post(f"/admin/audit/auditentry/{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    client.post(f"/admin/audit/auditentry/{entry.pk}/change/", {"target": "@nobody"})
    assert AuditEntry.objects.get(pk=entry.pk).target == "@bob"


def test_services_refusals_raise_before_writing(alice, bob, lobby):
    with pytest.raises(BadRequest):
        room_ban(room=lobby, actor=alice, user=alice)
    assert entries() == []


@pytest.mark.django_db(transaction=True)
async def test_the_path_survives_the_asgi_handler(alice, bob, lobby):
    """Under ASGI (as served) the middleware runs in the async chain and the view on a thread."""
    from django.test import AsyncClient

    from tests.factories import token_for

    key = await sync_to_async(token_for)(alice)
    client = AsyncClient()
    response = await client.post(
        "/api/rooms/lobby/bans/", {"username": "bob"}, content_type="application/json", AUTHORIZATION=f"Token {key}"
    )
    assert response.status_code == 201
    entry = await sync_to_async(only_entry)()
    assert (entry.action, entry.path) == (Action.USER_BANNED, "rest")


def test_admin_inline_unban_and_member_removal_are_audited_as_admin(alice, bob, carol, lobby):
    room_ban(room=lobby, actor=alice, user=bob)
    AuditEntry.objects.all().delete()
    ban = Ban.objects.get(room=lobby, user=bob)
    carol_membership = MembershipFactory(room=lobby, user=carol)
    owner = Membership.objects.get(room=lobby, user=alice)
    form = _room_form(
        lobby,
        **{
            "memberships-TOTAL_FORMS": "2",
            "memberships-INITIAL_FORMS": "2",
            "memberships-0-id": str(owner.pk),
            "memberships-0-room": str(lobby.pk),
            "memberships-0-user": str(alice.pk),
            "memberships-0-role": "owner",
            "memberships-1-id": str(carol_membership.pk),
            "memberships-1-room": str(lobby.pk),
            "memberships-1-user": str(carol.pk),
            "memberships-1-role": "member",
            "memberships-1-DELETE": "on",
            "bans-TOTAL_FORMS": "1",
            "bans-INITIAL_FORMS": "1",
            "bans-0-id": str(ban.pk),
            "bans-0-room": str(lobby.pk),
            "bans-0-user": str(bob.pk),
            "bans-0-DELETE": "on",
        },
    )
    response = admin_client(alice).post(f"/admin/rooms/room/{lobby.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[:3000]
    assert not Ban.objects.exists() and not Membership.objects.filter(user=carol).exists()
    assert sorted((e.action, e.target, e.path) for e in entries()) == [
        (Action.MEMBER_REMOVED, "@carol", "admin"),
        (Action.USER_UNBANNED, "@bob", "admin"),
    ]


def test_a_deactivation_saved_outside_the_service_is_still_audited(bob, carol):
    """A shell or script that saves `is_active` itself: recorded with no known actor, path `admin`."""
    bob.is_active = False
    bob.save()
    entry = only_entry()
    assert (entry.action, entry.actor_id, entry.target, entry.path) == (Action.USER_DEACTIVATED, None, "@bob", "admin")
    # Saves that leave `is_active` alone record nothing.
    bob.display_name = "Robert"
    bob.save()
    carol.set_password("another-pass-123")
    carol.save(update_fields=["password"])
    User.objects.create_user("frank", password="pw-123456789", is_active=False)
    assert len(entries()) == 1
    with entry_path("admin"):
        bob.is_active = True
        bob.save(update_fields=["is_active"])
    assert [(e.action, e.path) for e in entries()][-1] == (Action.USER_REACTIVATED, "admin")

"""Reports (POST /api/messages/<id>/report/, the room's queue, resolving) and the audit trail endpoint."""

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.models import AuditEntry
from messaging.models import Message, Report
from messaging.services import message_create
from rooms.models import Ban, Membership
from rooms.services import membership_set_role, room_ban, room_update
from tests.api.conftest import assert_error
from tests.factories import MembershipFactory, MessageFactory, RoomFactory, UserFactory

pytestmark = pytest.mark.django_db

REPORT_KEYS = {"id", "message", "reporter", "reason", "created_at"}
AUDIT_KEYS = {"at", "actor", "action", "target", "path"}


@pytest.fixture
def moderator(lobby):
    return MembershipFactory(room=lobby, user=UserFactory(username="mod"), role=Membership.Role.MODERATOR).user


# --- reporting -------------------------------------------------------------------


def test_a_reader_reports_once_and_a_repeat_answers_the_open_report(api, alice, bob, lobby):
    message = MessageFactory(room=lobby, author=alice, body="offensive")
    r = api(bob).post(f"/api/messages/{message.pk}/report/", {"reason": "  rude  "})
    assert r.status_code == 201, r.content
    body = r.json()
    assert set(body) == REPORT_KEYS
    assert body["reason"] == "rude" and body["reporter"]["username"] == "bob"
    assert body["message"]["id"] == message.pk and body["message"]["body"] == "offensive"
    again = api(bob).post(f"/api/messages/{message.pk}/report/", {"reason": "still rude"})
    assert again.status_code == 200 and again.json()["id"] == body["id"] and again.json()["reason"] == "rude"
    assert Report.objects.count() == 1
    # Another reader's report is a report of its own.
    carol = UserFactory(username="carol")
    assert api(carol).post(f"/api/messages/{message.pk}/report/", {"reason": "spam"}).status_code == 201
    # Once resolved, the same user may report again.
    Report.objects.filter(pk=body["id"]).update(resolved_at=message.created_at, resolution="dismiss")
    assert api(bob).post(f"/api/messages/{message.pk}/report/", {"reason": "again"}).status_code == 201


def test_report_input_and_access_errors(api, alice, bob, carol, lobby, private_room):
    message = MessageFactory(room=lobby, author=alice)
    url = f"/api/messages/{message.pk}/report/"
    for bad in ({}, {"reason": ""}, {"reason": "   "}, {"reason": 5}, {"reason": None}, {"reason": "x" * 501}):
        assert_error(api(bob).post(url, bad), 400, "bad_request")
    assert_error(api(bob).post(url, {"reason": "spam\x00"}), 400, "bad_request")
    assert api(bob).post(url, {"reason": "é" * 500}).status_code == 201
    # 500 is counted after trimming, as the contract says, though the padded text is longer.
    padded = api(alice).post(url, {"reason": "  " + "x" * 500 + "\n"})
    assert padded.status_code == 201 and padded.json()["reason"] == "x" * 500
    assert_error(api(bob).post(url, ["reason"]), 400, "bad_request")
    assert_error(api().post(url, {"reason": "x"}), 401, "not_authenticated")
    assert_error(api(bob).post("/api/messages/999999/report/", {"reason": "x"}), 404, "not_found")
    assert_error(api(bob).post(f"/api/messages/{2**63}/report/", {"reason": "x"}), 404, "not_found")
    secret = MessageFactory(room=private_room, author=alice)
    assert_error(api(bob).post(f"/api/messages/{secret.pk}/report/", {"reason": "x"}), 404, "not_found")
    Ban.objects.create(room=lobby, user=carol, banned_by=alice)
    assert_error(api(carol).post(url, {"reason": "x"}), 403, "forbidden")
    deleted = MessageFactory(room=lobby, author=alice, deleted_at=message.created_at)
    assert_error(api(bob).post(f"/api/messages/{deleted.pk}/report/", {"reason": "x"}), 400, "bad_request")
    assert Report.objects.count() == 2


def test_the_open_report_constraint_stops_a_racing_duplicate(api, monkeypatch, alice, bob, lobby):
    """Two requests that both saw no open report: the second insert fails and answers the first's report."""
    from django.db.models import QuerySet

    message = MessageFactory(room=lobby, author=alice)
    first = Report.objects.create(message=message, room=lobby, reporter=bob, reason="first")
    real_first = QuerySet.first
    calls = {"n": 0}

    def first_misses_once(self):
        # The pre-check of the second request runs before the first commits.
        if self.model is Report and calls["n"] == 0:
            calls["n"] += 1
            return None
        return real_first(self)

    monkeypatch.setattr(QuerySet, "first", first_misses_once)
    r = api(bob).post(f"/api/messages/{message.pk}/report/", {"reason": "second"})
    assert r.status_code == 200 and r.json()["id"] == first.pk and calls["n"] == 1
    assert Report.objects.count() == 1


# --- the queue -------------------------------------------------------------------


def test_owner_and_moderators_list_open_reports_oldest_first(api, alice, bob, carol, lobby, moderator):
    m1 = MessageFactory(room=lobby, author=alice, body="one")
    m2 = MessageFactory(room=lobby, author=carol, body="two")
    first = api(bob).post(f"/api/messages/{m2.pk}/report/", {"reason": "first"}).json()
    second = api(carol).post(f"/api/messages/{m1.pk}/report/", {"reason": "second"}).json()
    closed = api(alice).post(f"/api/messages/{m2.pk}/report/", {"reason": "closed"}).json()
    Report.objects.filter(pk=closed["id"]).update(resolved_at=m1.created_at, resolution="dismiss")
    other = RoomFactory(slug="other", created_by=alice)
    api(bob).post(f"/api/messages/{MessageFactory(room=other).pk}/report/", {"reason": "elsewhere"})
    for user in (alice, moderator):
        r = api(user).get("/api/rooms/lobby/reports/")
        assert r.status_code == 200
        listed = r.json()
        assert [x["id"] for x in listed] == [first["id"], second["id"]]
        assert set(listed[0]) == REPORT_KEYS
        assert listed[0]["message"]["body"] == "two" and listed[0]["message"]["room"] == "lobby"
        assert listed[0]["reporter"] == {"id": bob.pk, "username": "bob", "display_name": "Bob"}
        assert listed[0]["reason"] == "first"


def test_reports_list_is_for_moderators_only(api, alice, bob, carol, lobby, private_room, bob_carol_dm):
    MembershipFactory(room=lobby, user=bob)
    assert_error(api(bob).get("/api/rooms/lobby/reports/"), 403, "forbidden")
    assert_error(api(carol).get("/api/rooms/lobby/reports/"), 403, "forbidden")  # reader, not a member
    assert_error(api(bob).get("/api/rooms/staff/reports/"), 404, "not_found")
    assert_error(api(bob).get("/api/rooms/nope/reports/"), 404, "not_found")
    assert_error(api(bob).get(f"/api/rooms/{bob_carol_dm.slug}/reports/"), 403, "forbidden")  # no moderators
    assert_error(api().get("/api/rooms/lobby/reports/"), 401, "not_authenticated")


def test_listing_reports_costs_the_same_for_many(api, alice, lobby):
    def add_reports(n):
        for i in range(n):
            message = MessageFactory(room=lobby, author=alice)
            api(UserFactory()).post(f"/api/messages/{message.pk}/report/", {"reason": f"r{i}"})

    def queries_to_list(expected):
        client = api(alice)
        with CaptureQueriesContext(connection) as ctx:
            assert len(client.get("/api/rooms/lobby/reports/").json()) == expected
        return len(ctx.captured_queries)

    add_reports(2)
    few = queries_to_list(2)
    add_reports(10)
    assert queries_to_list(12) == few


# --- resolving -------------------------------------------------------------------


def test_dismiss_closes_only_that_report_and_is_audited(api, alice, bob, carol, lobby, moderator):
    message = MessageFactory(room=lobby, author=alice)
    mine = api(bob).post(f"/api/messages/{message.pk}/report/", {"reason": "a"}).json()
    theirs = api(carol).post(f"/api/messages/{message.pk}/report/", {"reason": "b"}).json()
    r = api(moderator).post(f"/api/rooms/lobby/reports/{mine['id']}/resolve/", {"action": "dismiss"})
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["resolution"] == "dismiss" and body["resolved_by"]["username"] == "mod" and body["resolved_at"]
    assert [x["id"] for x in api(alice).get("/api/rooms/lobby/reports/").json()] == [theirs["id"]]
    assert Message.objects.get(pk=message.pk).deleted_at is None
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.detail, entry.path, entry.actor_id, entry.message_id, entry.target_user_id) == (
        "report_resolved",
        "dismiss",
        "rest",
        moderator.pk,
        message.pk,
        alice.pk,
    )
    assert entry.target == f"report #{mine['id']} on message #{message.pk} (seq {message.seq}) by @alice"
    # Resolving it again: it is not open any more.
    again = api(alice).post(f"/api/rooms/lobby/reports/{mine['id']}/resolve/", {"action": "delete"})
    assert_error(again, 404, "not_found")
    assert AuditEntry.objects.count() == 1 and Message.objects.get(pk=message.pk).deleted_at is None


@pytest.mark.django_db(transaction=True)
async def test_delete_deletes_live_and_closes_every_open_report(ws, api, alice, bob, carol, lobby):
    message, _ = await sync_to_async(message_create)(room=lobby, author=bob, body="bad", rate_limit=False)
    reports = []
    for user in (bob, carol):
        client = await sync_to_async(api)(user)
        r = await sync_to_async(client.post)(f"/api/messages/{message.pk}/report/", {"reason": "bad"})
        reports.append(r.json()["id"])
    owner = await sync_to_async(api)(alice)
    async with ws(carol) as c:
        await c.join("lobby")
        r = await sync_to_async(owner.post)(f"/api/rooms/lobby/reports/{reports[1]}/resolve/", {"action": "delete"})
        assert r.status_code == 200 and r.json()["message"]["deleted"] is True
        frame = await c.recv_type("message_deleted")
        assert frame["message"]["id"] == message.pk
    assert not await Report.objects.filter(resolved_at__isnull=True).aexists()
    assert {r.resolution async for r in Report.objects.all()} == {"delete"}
    rows = [(e.action, e.path) async for e in AuditEntry.objects.order_by("id")]
    assert rows == [("message_deleted", "rest"), ("report_resolved", "rest")]


def test_a_moderator_deleting_a_reported_message_closes_its_reports(api, alice, bob, lobby, moderator):
    message = MessageFactory(room=lobby, author=alice)
    api(bob).post(f"/api/messages/{message.pk}/report/", {"reason": "x"})
    assert api(moderator).delete(f"/api/messages/{message.pk}/").status_code == 200
    report = Report.objects.get()
    assert report.resolution == "delete" and report.resolved_by_id == moderator.pk
    assert api(alice).get("/api/rooms/lobby/reports/").json() == []


def test_the_authors_own_delete_leaves_the_reports_for_the_moderators(api, alice, bob, carol, lobby):
    message = MessageFactory(room=lobby, author=carol)
    report = api(bob).post(f"/api/messages/{message.pk}/report/", {"reason": "x"}).json()
    assert api(carol).delete(f"/api/messages/{message.pk}/").status_code == 200
    listed = api(alice).get("/api/rooms/lobby/reports/").json()
    assert [x["id"] for x in listed] == [report["id"]] and listed[0]["message"]["deleted"] is True
    r = api(alice).post(f"/api/rooms/lobby/reports/{report['id']}/resolve/", {"action": "delete"})
    assert r.status_code == 200 and Report.objects.get().resolution == "delete"
    # Already deleted by its author: only the report's resolution is recorded.
    assert list(AuditEntry.objects.values_list("action", flat=True)) == ["report_resolved"]


def test_resolve_errors(api, alice, bob, carol, lobby, private_room, moderator):
    message = MessageFactory(room=lobby, author=alice)
    report = api(bob).post(f"/api/messages/{message.pk}/report/", {"reason": "x"}).json()
    url = f"/api/rooms/lobby/reports/{report['id']}/resolve/"
    for bad in ({}, {"action": "ban"}, {"action": None}, {"action": 1}):
        assert_error(api(alice).post(url, bad), 400, "bad_request")
    assert_error(api(bob).post(url, {"action": "dismiss"}), 403, "forbidden")
    assert_error(
        api(bob).post(f"/api/rooms/staff/reports/{report['id']}/resolve/", {"action": "dismiss"}), 404, "not_found"
    )
    RoomFactory(slug="other", created_by=alice)
    # A report is resolved through its own room only.
    assert_error(
        api(alice).post(f"/api/rooms/other/reports/{report['id']}/resolve/", {"action": "dismiss"}), 404, "not_found"
    )
    assert_error(api(alice).post("/api/rooms/lobby/reports/999999/resolve/", {"action": "dismiss"}), 404, "not_found")
    assert_error(api(alice).post(f"/api/rooms/lobby/reports/{2**63}/resolve/", {"action": "dismiss"}), 404, "not_found")
    assert Report.objects.get().resolved_at is None and not AuditEntry.objects.exists()


# --- the audit trail -------------------------------------------------------------


def test_audit_trail_newest_first_paged_for_owner_and_moderators(api, alice, bob, carol, lobby, moderator):
    room_ban(room=lobby, actor=alice, user=bob)
    room_update(room=lobby, actor=alice, is_locked=True)
    room_update(room=lobby, actor=alice, is_locked=False)
    other = RoomFactory(slug="other", created_by=alice)
    room_update(room=other, actor=alice, is_locked=True)
    r = api(moderator).get("/api/rooms/lobby/audit/")
    assert r.status_code == 200
    body = r.json()
    assert isinstance(body, list) and "Link" not in r.headers
    assert [e["action"] for e in body] == ["room_unlocked", "room_locked", "user_banned"]
    assert set(body[0]) == AUDIT_KEYS
    banned = body[2]
    assert banned["actor"] == {"id": alice.pk, "username": "alice", "display_name": "Alice"}
    assert (banned["target"], banned["path"]) == ("@bob", "admin")

    MembershipFactory(room=lobby, user=carol)
    membership_set_role(room=lobby, actor=alice, user=carol, role="moderator")
    changed = api(alice).get("/api/rooms/lobby/audit/", {"limit": 1}).json()[0]
    assert (changed["action"], changed["target"]) == ("role_changed", "@carol (member → moderator)")
    AuditEntry.objects.filter(action="role_changed").delete()

    r = api(alice).get("/api/rooms/lobby/audit/", {"limit": 2})
    assert [e["action"] for e in r.json()] == ["room_unlocked", "room_locked"]
    following = r.headers["Link"].removeprefix("<").removesuffix('>; rel="next"')
    assert "limit=2" in following and "before=" in following
    r = api(alice).get(following)
    assert [e["action"] for e in r.json()] == ["user_banned"] and "Link" not in r.headers


def test_audit_trail_permissions_and_parameters(api, alice, bob, carol, lobby, private_room, bob_carol_dm):
    MembershipFactory(room=lobby, user=bob)
    assert_error(api(bob).get("/api/rooms/lobby/audit/"), 403, "forbidden")
    assert_error(api(bob).get("/api/rooms/staff/audit/"), 404, "not_found")
    assert_error(api(bob).get(f"/api/rooms/{bob_carol_dm.slug}/audit/"), 403, "forbidden")
    assert_error(api().get("/api/rooms/lobby/audit/"), 401, "not_authenticated")
    for params in ({"limit": 0}, {"limit": "x"}, {"before": "y"}, {"before": -1}):
        assert_error(api(alice).get("/api/rooms/lobby/audit/", params), 400, "bad_request")
    assert api(alice).get("/api/rooms/lobby/audit/", {"limit": 1000}).status_code == 200
    # A ban takes the moderator's room away from them, trail included.
    mod = MembershipFactory(room=lobby, role=Membership.Role.MODERATOR).user
    assert api(mod).get("/api/rooms/lobby/audit/").status_code == 200
    room_ban(room=lobby, actor=alice, user=mod)
    assert_error(api(mod).get("/api/rooms/lobby/audit/"), 403, "forbidden")

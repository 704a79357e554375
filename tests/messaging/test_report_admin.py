"""The moderators' report queue in the admin: open reports first, resolved through report_resolve."""

import pytest
from asgiref.sync import sync_to_async
from django.test import Client

from audit.models import AuditEntry
from messaging.models import Message, Report
from messaging.services import message_create, report_create
from tests.factories import MessageFactory, RoomFactory, UserFactory


def admin_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_queue_lists_open_reports_first_with_message_room_and_reporter(alice, bob, carol, lobby):
    other = RoomFactory(slug="other", created_by=bob)
    old = MessageFactory(room=lobby, author=carol, body="resolved already")
    spam = MessageFactory(room=other, author=carol, body="cheap watches")
    closed, _ = report_create(message_id=old.pk, reporter=bob, reason="zz was bad")
    Report.objects.filter(pk=closed.pk).update(resolved_at=old.created_at, resolution="dismiss")
    first, _ = report_create(message_id=spam.pk, reporter=bob, reason="spam, first")
    report_create(message_id=old.pk, reporter=UserFactory(username="erin"), reason="zz second report")
    html = admin_client(alice).get("/admin/messaging/report/").content.decode()
    # Open ones first, oldest first among them; then the resolved one.
    assert html.index("spam, first") < html.index("zz second report") < html.index("zz was bad")
    assert "cheap watches" in html and f"/admin/messaging/message/{spam.pk}/change/" in html
    assert "other" in html and "bob" in html
    client = admin_client(alice)
    assert "zz was bad" not in client.get("/admin/messaging/report/?status=open").content.decode()
    assert client.get(f"/admin/messaging/report/{first.pk}/change/").status_code == 200
    assert client.get("/admin/messaging/report/add/").status_code == 403
    assert client.post(f"/admin/messaging/report/{first.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Report.objects.count() == 3


def test_admin_dismiss_action_resolves_through_the_service(alice, bob, lobby):
    message = MessageFactory(room=lobby, author=bob)
    report, _ = report_create(message_id=message.pk, reporter=alice, reason="hmm")
    response = admin_client(alice).post(
        "/admin/messaging/report/", {"action": "dismiss_reports", "_selected_action": [str(report.pk)]}
    )
    assert response.status_code == 302
    report.refresh_from_db()
    assert (report.resolution, report.resolved_by_id) == ("dismiss", alice.pk) and report.resolved_at is not None
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.path, entry.detail, entry.room_id) == ("report_resolved", "admin", "dismiss", lobby.pk)
    assert Message.objects.get(pk=message.pk).deleted_at is None


@pytest.mark.django_db(transaction=True)
async def test_admin_delete_action_deletes_live_and_skips_reports_closed_on_the_way(ws, alice, bob, carol, lobby):
    message, _ = await sync_to_async(message_create)(room=lobby, author=bob, body="rude", rate_limit=False)
    r1, _ = await sync_to_async(report_create)(message_id=message.pk, reporter=carol, reason="rude")
    r2, _ = await sync_to_async(report_create)(message_id=message.pk, reporter=alice, reason="agreed")
    client = await sync_to_async(admin_client)(alice)
    async with ws(carol) as c:
        await c.join("lobby")
        response = await sync_to_async(client.post)(
            "/admin/messaging/report/",
            {"action": "delete_reported_messages", "_selected_action": [str(r1.pk), str(r2.pk)]},
            follow=True,
        )
        assert response.status_code == 200
        frame = await c.recv_type("message_deleted")
        assert frame["message"]["id"] == message.pk
    # The second report was closed by the first one's deletion: said, not an error.
    assert "1 were closed already" in response.content.decode()
    assert {r.resolution async for r in Report.objects.all()} == {"delete"}
    rows = [(e.action, e.path) async for e in AuditEntry.objects.order_by("id")]
    assert rows == [("message_deleted", "admin"), ("report_resolved", "admin")]


def test_non_staff_cannot_reach_the_queue(bob):
    response = admin_client(bob).get("/admin/messaging/report/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]

"""Moderators acting on one reported message at once: every path locks the message before its reports."""

import threading
from collections.abc import Callable

import pytest
from django.db import connections

from messaging.models import Message, Report
from messaging.services import message_create, message_delete, report_create, report_resolve
from rooms.models import Membership
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

ROUNDS = 12


def race(*actions: Callable[[], object]) -> list[BaseException]:
    """Run the actions at once, each on its own connection (as separate processes would); their errors."""
    barrier = threading.Barrier(len(actions))
    errors: list[BaseException] = []

    def run(action: Callable[[], object]) -> None:
        try:
            barrier.wait()
            action()
        except BaseException as exc:  # reported to the test, whatever it is
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(action,)) for action in actions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


@pytest.fixture
def moderators(lobby, alice):
    mod = UserFactory(username="mod")
    MembershipFactory(room=lobby, user=mod, role=Membership.Role.MODERATOR)
    return alice, mod


def reported(lobby, author, reporters) -> tuple[Message, list[Report]]:
    message, _ = message_create(room=lobby, author=author, body="buy now", rate_limit=False)
    return message, [report_create(message_id=message.pk, reporter=r, reason="spam")[0] for r in reporters]


def test_resolving_two_reports_of_one_message_at_once_never_deadlocks(lobby, bob, carol, moderators):
    """Two moderators each `delete` a different report of the same message (was: "deadlock detected" on PostgreSQL)."""
    owner, mod = moderators
    for _ in range(ROUNDS):
        message, (first, second) = reported(lobby, bob, [carol, owner])
        errors = race(
            lambda r=first: report_resolve(report_id=r.pk, actor=owner, action="delete"),
            lambda r=second: report_resolve(report_id=r.pk, actor=mod, action="delete"),
        )
        # One may find its report already closed by the other's delete: that is a NotFound, not a deadlock.
        assert all(getattr(e, "code", None) == "not_found" for e in errors), errors
        assert Message.objects.get(pk=message.pk).deleted_at is not None
        assert not Report.objects.filter(message=message, resolved_at__isnull=True).exists()


def test_resolving_a_report_while_another_moderator_deletes_the_message_never_deadlocks(lobby, bob, carol, moderators):
    owner, mod = moderators
    for _ in range(ROUNDS):
        message, (report,) = reported(lobby, bob, [carol])
        errors = race(
            lambda r=report: report_resolve(report_id=r.pk, actor=owner, action="delete"),
            lambda m=message: message_delete(message=m, actor=mod),
        )
        assert all(getattr(e, "code", None) == "not_found" for e in errors), errors
        assert Message.objects.get(pk=message.pk).deleted_at is not None
        assert not Report.objects.filter(message=message, resolved_at__isnull=True).exists()

"""Migration 0006 renders the history written before `html` existed."""

import importlib
from types import SimpleNamespace

import pytest
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.utils import timezone

from messaging.models import Mention, Message
from tests.factories import MessageFactory

pytestmark = pytest.mark.django_db

migration = importlib.import_module("messaging.migrations.0006_render_message_html")


@pytest.fixture
def run_migration():
    """The migration's function with the historical models it runs with (the state just before it)."""
    state = MigrationLoader(connection).project_state(("messaging", "0005_rich_messages_and_reports"))
    # It only reads the editor's connection; a real schema editor cannot open
    # inside the test's transaction on SQLite.
    return lambda: migration.render_history(state.apps, SimpleNamespace(connection=connection))


def test_history_is_rendered_with_its_mentions_and_deleted_rows_stay_empty(
    alice, bob, lobby, monkeypatch, run_migration
):
    # Several batches, so the keyset paging is exercised.
    monkeypatch.setattr(migration, "BATCH", 2)
    plain = [MessageFactory(room=lobby, author=alice, body=f"**{n}** <i>x</i>", html="") for n in range(5)]
    mentioning = MessageFactory(room=lobby, author=alice, body="hi @bob and @nobody", html="")
    Mention.objects.create(message=mentioning, user=bob, room=lobby, seq=mentioning.seq)
    deleted = MessageFactory(room=lobby, author=alice, body="*gone*", html="", deleted_at=timezone.now())

    run_migration()

    for n, message in enumerate(plain):
        message.refresh_from_db()
        assert message.html == f"<p><strong>{n}</strong> &lt;i&gt;x&lt;/i&gt;</p>"
    mentioning.refresh_from_db()
    assert mentioning.html == ('<p>hi <a href="/u/bob/" rel="nofollow noopener noreferrer">@bob</a> and @nobody</p>')
    deleted.refresh_from_db()
    assert deleted.html == ""


def test_rows_already_rendered_are_left_alone(alice, lobby, django_assert_num_queries, run_migration):
    kept = MessageFactory(room=lobby, author=alice, body="*new*", html="<p>as written by the services</p>")
    # One read finds nothing to do: no update, no mention lookup.
    with django_assert_num_queries(1):
        run_migration()
    kept.refresh_from_db()
    assert kept.html == "<p>as written by the services</p>"
    assert Message.objects.filter(html="").count() == 0

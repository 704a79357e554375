"""Render the history written before messages had `html` (0005 added the column, empty).

Resumable and gentle on a large table: rows are read in primary-key order,
BATCH at a time, each batch updated and committed on its own (the migration
is not atomic), and only rows still without html are touched, so a run that
was stopped picks up where it was. Deleted messages keep "" (as
`message_delete` leaves them).
"""

from django.db import migrations, transaction

BATCH = 500


def render_history(apps, schema_editor):
    # The renderer is imported, not copied: it is a pure function of the body
    # and the mentioned usernames, with no model or schema in it, so the
    # current one is the right one to fill the column with. A later change to
    # what it produces ships its own migration to render history again.
    from messaging.markdown import render_markdown

    db = schema_editor.connection.alias
    Message = apps.get_model("messaging", "Message")
    Mention = apps.get_model("messaging", "Mention")
    todo = Message.objects.using(db).filter(html="", deleted_at__isnull=True).order_by("pk")
    last = 0
    while True:
        batch = list(todo.filter(pk__gt=last).only("pk", "body")[:BATCH])
        if not batch:
            return
        last = batch[-1].pk
        usernames: dict[int, list[str]] = {}
        mentions = (
            Mention.objects.using(db)
            .filter(message_id__in=[message.pk for message in batch])
            .order_by("message_id", "position")
            .values_list("message_id", "user__username")
        )
        for message_id, username in mentions:
            usernames.setdefault(message_id, []).append(username)
        for message in batch:
            message.html = render_markdown(message.body, usernames.get(message.pk, ()))
        with transaction.atomic(using=db):
            Message.objects.using(db).bulk_update(batch, ["html"])


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("messaging", "0005_rich_messages_and_reports"),
    ]

    operations = [
        # Backwards: nothing to undo; 0005's reverse drops the column itself.
        migrations.RunPython(render_history, migrations.RunPython.noop, elidable=True),
    ]

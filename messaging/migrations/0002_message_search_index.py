"""GIN index for full-text search over message bodies (PostgreSQL only).

The index is on the same expression `messaging.selectors.search_vector()`
builds, so `to_tsvector(...) @@ websearch_to_tsquery(...)` is answered from
the index. Other databases search by substring and get no index here. The
model's state is untouched (the index is not in Message.Meta), so the
migration autodetector sees no drift on any backend.
"""

from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector
from django.db import migrations

INDEX_NAME = "message_body_search"
# Must match messaging.selectors.SEARCH_CONFIG.
SEARCH_CONFIG = "english"


def _index() -> GinIndex:
    return GinIndex(SearchVector("body", config=SEARCH_CONFIG), name=INDEX_NAME)


def add_search_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.add_index(apps.get_model("messaging", "Message"), _index())


def remove_search_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.remove_index(apps.get_model("messaging", "Message"), _index())


class Migration(migrations.Migration):
    dependencies = [
        ("messaging", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(add_search_index, remove_search_index),
    ]

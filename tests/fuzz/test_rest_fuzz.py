"""Fuzzing the REST face: schemathesis against the OpenAPI schema (/api/schema/), in-process.

Every operation of the schema is called through Django's WSGI application
with a logged-in user's token, with generated path parameters that often
name real objects (rooms the user owns, joined, may not see; messages of
theirs and others'; real usernames and emoji), and every response goes
through schemathesis' checks: no 5xx, the status code, content type, headers
and body as the schema declares them, and the rest of its default set.
Besides: a refused message post (4xx) stores nothing, an accepted one stores one.

FUZZ_EXAMPLES sets the examples for the whole file (default 300, for CI), shared out
over the operations with at least 20 each; `make fuzz` runs 3,000. Derandomized
unless FUZZ_RANDOM=1.
"""

from __future__ import annotations

import collections
import os
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from messaging.models import Message
from rooms.models import Membership
from tests.factories import DmFactory, MembershipFactory, MessageFactory, RoomFactory, UserFactory

from .report import LINES

RANDOM = os.environ.get("FUZZ_RANDOM") == "1"

schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())
METHODS = {"get", "put", "post", "patch", "delete"}
OPERATIONS = sum(len(METHODS & set(item)) for item in schema.raw_schema["paths"].values())
# FUZZ_EXAMPLES is for the whole file, as for the websocket fuzzer: shared out over
# the operations, at least 20 each.
TOTAL = int(os.environ.get("FUZZ_EXAMPLES", "300"))
EXAMPLES = max(20, TOTAL // OPERATIONS)

TOKEN = "f" * 40
# What the seed fixture creates, read by the path-parameter hook while examples are generated.
SEED: dict[str, list[Any]] = {}


@schema.auth(refresh_interval=None, retry_on=[])
class TokenAuth:
    """The seeded user's token on every call; schemathesis' auth checks then probe without it and with a bad one."""

    def get(self, case: Any, context: Any) -> str:
        # A fixed key (the seed gives it to the user), since some cases are made at
        # collection, before any test has its user.
        return TOKEN

    def set(self, case: Any, data: str, context: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Token {data}"}


@schema.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Half the time, swap generated path parameters for the seeded objects' (else everything is a 404)."""
    if not SEED or not path_parameters:
        return st.just(path_parameters)
    real = {key: st.sampled_from(SEED[key]) for key in path_parameters if SEED.get(key)}
    if not real:
        return st.just(path_parameters)
    return st.one_of(
        st.just(path_parameters),
        st.fixed_dictionaries(real).map(lambda chosen: {**path_parameters, **chosen}),
    )


@pytest.fixture
def wsgi_in_test_transaction():
    """Keep the WSGI handler from closing the test's connection after each request (as Django's test client does)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def seed(db, wsgi_in_test_transaction):
    """A user who owns a room, is a member of another and a DM, with messages, reactions-to-be and peers."""
    me = UserFactory(username="fuzzer", display_name="Fuzz Er")
    Token.objects.create(user=me, key=TOKEN)
    bob = UserFactory(username="bob")
    alice = UserFactory(username="alice")
    owned = RoomFactory(slug="mine", created_by=me)
    joined = RoomFactory(slug="lobby", created_by=alice)
    MembershipFactory(room=joined, user=me)
    MembershipFactory(room=owned, user=bob)
    private = RoomFactory(slug="staff", created_by=alice, is_private=True)
    dm = DmFactory(participants=[me, bob])
    messages = [
        MessageFactory(room=owned, author=me),
        MessageFactory(room=owned, author=bob),
        MessageFactory(room=joined, author=alice),
        MessageFactory(room=joined, author=me),
        MessageFactory(room=dm, author=bob),
        MessageFactory(room=private, author=alice),
    ]
    SEED.update(
        slug=[owned.slug, joined.slug, private.slug, dm.slug],
        message_id=[m.pk for m in messages],
        username=["fuzzer", "bob", "alice"],
        emoji=["👍", "❤️", "🇫🇷"],
    )
    yield
    SEED.clear()


# positive_data_acceptance expects every schema-valid request to succeed. These
# operations refuse some schema-valid requests by rules no JSON Schema states
# (state, or text counted after trimming); every other check still runs on them.
SEMANTIC_400 = {
    "POST /api/auth/token/": "the credentials must be right",
    "POST /api/dms/": "the usernames must be other active users",
    "POST /api/rooms/": "the slug must be free",
    "POST /api/rooms/{slug}/members/": "the username must be a user",
    "POST /api/rooms/{slug}/bans/": "the username must be a user",
    "PUT /api/messages/{message_id}/reactions/{emoji}/": "one fully-qualified emoji sequence",
    "DELETE /api/messages/{message_id}/reactions/{emoji}/": "one fully-qualified emoji sequence",
    "POST /api/rooms/{slug}/messages/": "body 1..4000 after trimming, or empty with the sender's unused uploads",
    "PATCH /api/messages/{message_id}/": "body 1..4000 after trimming",
    # Werkzeug, the transport here, ends an empty file's part without the blank line
    # real clients send, and Django's parser drops the part (tests/api/test_attachments.py).
    "POST /api/rooms/{slug}/attachments/": "an empty file, as Werkzeug encodes it",
    "PATCH /api/rooms/{slug}/members/{username}/": "not the owner's role",
}
# negative_data_rejection expects schema-invalid requests refused. DRF trims these
# fields before it checks their length, so white space may pad them past it.
TRIMMED = {"POST /api/rooms/", "PATCH /api/rooms/{slug}/", "POST /api/messages/{message_id}/report/"}
# Operations left out entirely, each with the defect that keeps it out: none now.
SKIPPED: dict[str, str] = {}


STATS: collections.Counter[str] = collections.Counter()


@pytest.fixture(scope="module", autouse=True)
def _print_counts():
    """The number of requests made and what they got, for the run's summary."""
    yield
    total = sum(v for k, v in STATS.items() if k.startswith("status:"))
    statuses = ", ".join(f"{k[7:]}: {v}" for k, v in sorted(STATS.items()) if k.startswith("status:"))
    operations = STATS["operations"]
    LINES.append(f"REST: {total} requests to {operations} operations (<= {EXAMPLES} examples each): {statuses}")


def message_count(case: Any) -> int | None:
    if case.method.upper() == "POST" and case.path == "/api/rooms/{slug}/messages/":
        return Message.objects.count()
    return None


@pytest.mark.timeout(max(120, EXAMPLES * 2))
@pytest.mark.django_db
@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    derandomize=not RANDOM,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=list(HealthCheck),
)
def test_api(case, seed):
    # The operation's, not the case's: schemathesis also sends other methods to its path.
    label = f"{case.operation.method.upper()} {case.operation.path}"
    if label in SKIPPED:
        pytest.skip(SKIPPED[label])
    before = message_count(case)
    excluded = [positive_data_acceptance] if label in SEMANTIC_400 else []
    if label in TRIMMED:
        excluded.append(negative_data_rejection)
    if label not in STATS:
        STATS[label] = 1
        STATS["operations"] += 1
    response = case.call_and_validate(excluded_checks=excluded)
    STATS[f"status:{response.status_code}"] += 1
    if before is not None:
        stored = Message.objects.count() - before
        if response.status_code >= 400:
            assert stored == 0, f"{response.status_code} but {stored} messages stored"
        elif response.status_code == 201:
            assert stored == 1
    assert Membership.objects.filter(user__username="fuzzer").exists()

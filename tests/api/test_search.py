"""Search: full text on PostgreSQL, substring on SQLite; only what the user may read."""

from urllib.parse import parse_qs, urlparse

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from messaging.models import Message
from messaging.selectors import messages_search
from rooms.models import Ban
from tests.api.conftest import assert_error
from tests.factories import MembershipFactory, MessageFactory, RoomFactory

pytestmark = pytest.mark.django_db


def bodies(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [m["body"] for m in response.json()["results"]]


def test_search_finds_readable_messages_only(api, alice, bob, lobby, private_room):
    banned_from = RoomFactory(slug="banned", created_by=alice)
    joined_private = RoomFactory(slug="inner", created_by=alice, is_private=True)
    MembershipFactory(room=joined_private, user=bob)
    Ban.objects.create(room=banned_from, user=bob)
    MessageFactory(room=lobby, author=alice, body="Deploy tonight at nine")
    MessageFactory(room=private_room, author=alice, body="deploy secrets in staff")
    MessageFactory(room=banned_from, author=alice, body="deploy where bob is banned")
    MessageFactory(room=joined_private, author=alice, body="deploy plan for insiders")
    MessageFactory(room=lobby, author=alice, body="deploy retracted", deleted_at=timezone.now())
    MessageFactory(room=lobby, author=alice, body="unrelated chatter")
    found = bodies(api(bob).get("/api/search/", {"q": "deploy"}))
    assert sorted(found) == ["Deploy tonight at nine", "deploy plan for insiders"]
    assert len(bodies(api(alice).get("/api/search/", {"q": "deploy"}))) == 4  # never the deleted one


def test_search_results_are_messages(api, alice, bob, lobby):
    msg = MessageFactory(room=lobby, author=bob, body="hello searchable world", client_id="c9")
    r = api(bob).get("/api/search/", {"q": "searchable"})
    assert r.json()["next"] is None
    (result,) = r.json()["results"]
    assert result["id"] == msg.pk and result["room"] == "lobby" and result["seq"] == msg.seq
    assert result["client_id"] == "c9"
    assert api(alice).get("/api/search/", {"q": "searchable"}).json()["results"][0]["client_id"] is None


def test_search_in_one_room(api, alice, bob, lobby):
    other = RoomFactory(slug="other", created_by=alice)
    MessageFactory(room=lobby, author=alice, body="release notes lobby")
    MessageFactory(room=other, author=alice, body="release notes other")
    assert bodies(api(bob).get("/api/search/", {"q": "release", "room": "other"})) == ["release notes other"]
    assert_error(api(bob).get("/api/search/", {"q": "release", "room": "nope"}), 404, "not_found")


def test_search_in_a_room_the_user_cannot_read(api, alice, bob, lobby, private_room):
    assert_error(api(bob).get("/api/search/", {"q": "x", "room": "staff"}), 404, "not_found")
    Ban.objects.create(room=lobby, user=bob)
    assert_error(api(bob).get("/api/search/", {"q": "x", "room": "lobby"}), 403, "forbidden")


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"q": ""},
        {"q": "   "},
        {"q": "x" * 501},
        {"q": "x", "limit": 0},
        {"q": "x", "limit": "many"},
        {"q": "x", "offset": -1},
        {"q": "x", "offset": 2**64},
    ],
)
def test_search_bad_parameters_are_400(api, bob, params):
    assert_error(api(bob).get("/api/search/", params), 400, "bad_request")


def test_search_pages_with_next(api, alice, bob, lobby):
    for i in range(7):
        MessageFactory(room=lobby, author=alice, body=f"paging test number {i}")
    client = api(bob)
    url = "/api/search/?q=paging&room=lobby&limit=3"
    seen: list[int] = []
    pages = 0
    while url:
        r = client.get(url)
        assert r.status_code == 200
        seen.extend(m["id"] for m in r.json()["results"])
        url = r.json()["next"]
        pages += 1
    assert pages == 3 and len(seen) == 7 and len(set(seen)) == 7


def test_search_limit_is_clamped_and_deep_offsets_are_empty(api, alice, bob, lobby):
    Message.objects.bulk_create(Message(room=lobby, seq=i, author=alice, body=f"clamp {i}") for i in range(1, 102))
    r = api(bob).get("/api/search/", {"q": "clamp", "limit": 1000})
    assert len(r.json()["results"]) == 100
    assert parse_qs(urlparse(r.json()["next"]).query) == {"q": ["clamp"], "limit": ["100"], "offset": ["100"]}
    r = api(bob).get(r.json()["next"])
    assert len(r.json()["results"]) == 1 and r.json()["next"] is None
    r = api(bob).get("/api/search/", {"q": "clamp", "offset": 2**63 - 1})
    assert r.status_code == 200 and r.json() == {"results": [], "next": None}


def test_search_is_case_insensitive_on_either_backend(api, alice, bob, lobby):
    MessageFactory(room=lobby, author=alice, body="the KUBERNETES cluster")
    MessageFactory(room=lobby, author=alice, body="kubernetes again")
    MessageFactory(room=lobby, author=alice, body="minikubernetesish")
    found = bodies(api(bob).get("/api/search/", {"q": "Kubernetes"}))
    if connection.vendor == "postgresql":
        # Full-text search matches words, not substrings.
        assert sorted(found) == ["kubernetes again", "the KUBERNETES cluster"]
    else:
        # SQLite: a substring match, newest first.
        assert found == ["minikubernetesish", "kubernetes again", "the KUBERNETES cluster"]


@pytest.mark.postgres
def test_full_text_search_ranks_best_match_first(api, alice, bob, lobby):
    best = MessageFactory(room=lobby, author=alice, body="deploy deploy deploy: the deploy checklist")
    MessageFactory(room=lobby, author=alice, body="maybe we deploy after lunch, once the tests are green again")
    MessageFactory(room=lobby, author=alice, body="lunch menu")
    found = api(bob).get("/api/search/", {"q": "deploy"}).json()["results"]
    assert found[0]["id"] == best.pk  # older, but the better match
    assert len(found) == 2


@pytest.mark.postgres
def test_full_text_search_stems_and_supports_websearch_syntax(api, alice, bob, lobby):
    MessageFactory(room=lobby, author=alice, body="We deployed the new servers")
    MessageFactory(room=lobby, author=alice, body="deploying the old servers")
    assert len(bodies(api(bob).get("/api/search/", {"q": "deploys"}))) == 2
    assert bodies(api(bob).get("/api/search/", {"q": "deploy -old"})) == ["We deployed the new servers"]
    assert bodies(api(bob).get("/api/search/", {"q": '"new servers"'})) == ["We deployed the new servers"]
    # Operators alone, or only stop words, find nothing rather than failing.
    assert bodies(api(bob).get("/api/search/", {"q": "the"})) == []
    assert bodies(api(bob).get("/api/search/", {"q": '" - OR ! & | :*'})) == []


@pytest.mark.postgres
def test_full_text_search_uses_the_gin_index(alice, lobby):
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'message_body_search'")
        (indexdef,) = cursor.fetchone()
        assert "gin" in indexdef.lower() and "to_tsvector" in indexdef
        with CaptureQueriesContext(connection) as ctx:
            messages_search(user=alice, query="deploy", limit=10)
        (search_sql,) = (q["sql"] for q in ctx.captured_queries)
        # A tiny table is cheaper to scan; forbid that to see whether the index applies at all.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + search_sql)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "message_body_search" in plan, plan

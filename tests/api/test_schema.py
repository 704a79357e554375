"""The OpenAPI schema and docs page: public, JSON, offline, and true to the responses."""

import re

import pytest
from django.contrib.staticfiles import finders
from django.core.management import call_command

from tests.factories import MembershipFactory, MessageFactory

pytestmark = pytest.mark.django_db


def test_schema_is_public_json(api):
    r = api().get("/api/schema/")
    assert r.status_code == 200
    assert r["Content-Type"].startswith("application/json")
    schema = r.json()
    assert schema["openapi"].startswith("3.")
    paths = schema["paths"]
    for path in (
        "/api/auth/token/",
        "/api/rooms/",
        "/api/dms/",
        "/api/rooms/{slug}/",
        "/api/rooms/{slug}/join/",
        "/api/rooms/{slug}/leave/",
        "/api/rooms/{slug}/members/",
        "/api/rooms/{slug}/members/{username}/",
        "/api/rooms/{slug}/bans/",
        "/api/rooms/{slug}/bans/{username}/",
        "/api/rooms/{slug}/messages/",
        "/api/rooms/{slug}/read/",
        "/api/messages/{message_id}/",
        "/api/search/",
        "/api/mentions/",
        "/api/messages/{message_id}/reactions/{emoji}/",
    ):
        assert path in paths, path
    # The token endpoint is the one way in, so it needs no authentication.
    assert paths["/api/auth/token/"]["post"].get("security", [{}]) == [{}]
    assert paths["/api/rooms/"]["get"]["security"] == [{"cookieAuth": []}, {"tokenAuth": []}]


def test_schema_states_the_bounds_the_server_enforces(api):
    # A client (or the fuzzer) reading the schema must not find a value it allows refused.
    schema = api().get("/api/schema/").json()
    paths = schema["paths"]
    paging = {"before": 0, "after": 0, "offset": 0, "limit": 1}
    checked = 0
    for path, item in paths.items():
        for method, operation in item.items():
            for param in operation.get("parameters", []):
                if param["in"] == "query" and param["name"] in paging:
                    assert param["schema"].get("minimum") == paging[param["name"]], (method, path, param)
                    checked += 1
    assert checked >= 8
    audit = {p["name"]: p["schema"] for p in paths["/api/rooms/{slug}/audit/"]["get"]["parameters"]}
    assert audit["before"] == {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}
    assert audit["limit"] == {"type": "integer", "minimum": 1}
    body = paths["/api/messages/{message_id}/report/"]["post"]["requestBody"]["content"]["application/json"]
    ref = body["schema"]["$ref"].rsplit("/", 1)[-1]
    reason = schema["components"]["schemas"][ref]["properties"]["reason"]
    assert (reason["minLength"], reason["maxLength"]) == (1, 500)
    assert re.search(reason["pattern"], " x\n") and not re.search(reason["pattern"], " \t\n")
    assert not re.search(reason["pattern"], "a\x00b")


def test_schema_generation_has_no_warnings():
    # --fail-on-warn turns any guessed or missing type into a failure.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", "/dev/null")


def test_docs_page_is_public_and_offline(api):
    r = api().get("/api/docs/")
    assert r.status_code == 200
    html = r.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in html
    assert "cdn.jsdelivr.net" not in html and "unpkg.com" not in html
    assert finders.find("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")


def test_documented_shapes_match_real_responses(api, alice, bob, lobby):
    components = api().get("/api/schema/").json()["components"]["schemas"]

    def keys(name: str) -> set[str]:
        return set(components[name]["properties"])

    MembershipFactory(room=lobby, user=bob)
    msg = MessageFactory(room=lobby, author=bob)
    client = api(alice)
    assert set(client.get("/api/rooms/lobby/").json()) == keys("Room")
    page = client.get("/api/rooms/lobby/messages/").json()
    assert set(page) == keys("MessagePage")
    assert set(page["results"][0]) == keys("Message")
    assert set(page["results"][0]["author"]) == keys("User")
    assert set(client.get("/api/rooms/lobby/members/").json()[0]) == keys("Member")
    assert set(client.get("/api/search/", {"q": msg.body.split()[0]}).json()) == keys("SearchPage")
    assert set(client.post("/api/rooms/lobby/read/", {"seq": 1}).json()) == keys("ReadMarkerResponse")
    assert set(client.get("/api/mentions/").json()) == keys("MentionPage")
    assert set(client.post("/api/rooms/lobby/bans/", {"username": "bob"}).json()) == keys("Ban")
    reacted = client.client.put(f"/api/messages/{msg.pk}/reactions/%F0%9F%91%8D/").json()
    assert set(reacted) == keys("Message") and set(reacted["reactions"][0]) == keys("Reaction")
    reply = client.post("/api/rooms/lobby/messages/", {"body": "re", "reply_to": msg.pk}).json()
    assert set(reply["reply_to"]) == keys("Quote")
    assert set(client.get("/api/rooms/nope/").json()) == keys("Error")
    assert set(client.post("/api/dms/", {"usernames": ["bob"]}).json()) == keys("Room")

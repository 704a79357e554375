"""`html` over REST: post, history, one message, edit, delete, search, mentions, and the OpenAPI schema."""

import pytest

pytestmark = pytest.mark.django_db

REL = 'rel="nofollow noopener noreferrer"'


def test_post_history_and_one_message_carry_html(api, alice, bob, lobby):
    r = api(alice).post("/api/rooms/lobby/messages/", {"body": "# hi\n- **a**\n- <i>b</i>", "client_id": "m1"})
    assert r.status_code == 201
    html = "<p># hi</p>\n<ul>\n<li><strong>a</strong></li>\n<li>&lt;i&gt;b&lt;/i&gt;</li>\n</ul>"
    assert r.json()["html"] == html
    # An idempotent repeat answers with what was stored.
    again = api(alice).post("/api/rooms/lobby/messages/", {"body": "# hi\n- **a**\n- <i>b</i>", "client_id": "m1"})
    assert again.status_code == 200 and again.json()["html"] == html
    (listed,) = api(bob).get("/api/rooms/lobby/messages/").json()["results"]
    assert listed["html"] == html
    assert api(bob).get(f"/api/messages/{listed['id']}/").json()["html"] == html


def test_edit_renders_again_and_delete_blanks_html(api, alice, bob, lobby):
    message = api(alice).post("/api/rooms/lobby/messages/", {"body": "plain"}).json()
    r = api(alice).patch(f"/api/messages/{message['id']}/", {"body": "now [linked](https://example.com) @bob"})
    assert r.status_code == 200
    assert r.json()["html"] == (
        f'<p>now <a href="https://example.com" {REL}>linked</a> <a href="/u/bob/" {REL}>@bob</a></p>'
    )
    r = api(alice).delete(f"/api/messages/{message['id']}/")
    assert r.status_code == 200 and r.json()["html"] == ""
    assert api(bob).get("/api/rooms/lobby/messages/").json()["results"][0]["html"] == ""


def test_search_and_mentions_results_carry_html(api, alice, bob, lobby):
    api(alice).post("/api/rooms/lobby/messages/", {"body": "_findable_ note for @bob"})
    html = f'<p><em>findable</em> note for <a href="/u/bob/" {REL}>@bob</a></p>'
    assert api(bob).get("/api/search/", {"q": "findable"}).json()["results"][0]["html"] == html
    assert api(bob).get("/api/mentions/").json()["results"][0]["html"] == html


def test_the_schema_declares_html(api):
    schema = api().get("/api/schema/").json()
    message = schema["components"]["schemas"]["Message"]
    assert message["properties"]["html"]["type"] == "string"
    assert "html" in message["required"]

"""Token endpoint, authentication, and the error shape for DRF's and Django's own failures."""

import json

import pytest
from rest_framework.authtoken.models import Token

from tests.api.conftest import assert_error
from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db


def test_token_for_good_credentials(api, bob):
    r = api().post("/api/auth/token/", {"username": "bob", "password": PASSWORD})
    assert r.status_code == 200
    assert r.json() == {"token": Token.objects.get(user=bob).key}
    # The token works, and asking again gives the same one.
    assert api().client.get("/api/rooms/", HTTP_AUTHORIZATION=f"Token {r.json()['token']}").status_code == 200
    assert api().post("/api/auth/token/", {"username": "bob", "password": PASSWORD}).json() == r.json()


@pytest.mark.parametrize(
    "body",
    [
        {"username": "bob", "password": "wrong"},
        {"username": "nobody", "password": PASSWORD},
        {"username": "bob"},
        {"username": 7, "password": PASSWORD},
        {},
    ],
)
def test_token_bad_credentials_is_400(api, bob, body):
    assert_error(api().post("/api/auth/token/", body), 400, "bad_request")


def test_token_refused_for_inactive_user(api):
    UserFactory(username="gone", is_active=False)
    assert_error(api().post("/api/auth/token/", {"username": "gone", "password": PASSWORD}), 400, "bad_request")


def test_unauthenticated_is_401_with_www_authenticate(api, lobby):
    for r in (
        api().get("/api/rooms/"),
        api().post("/api/rooms/lobby/messages/", {"body": "hi"}),
        api().get("/api/search/", {"q": "x"}),
        api().client.get("/api/rooms/", HTTP_AUTHORIZATION="Token not-a-real-token"),
    ):
        assert_error(r, 401, "not_authenticated")
        assert r["WWW-Authenticate"] == "Token"


def test_deactivated_users_token_is_401(api, bob):
    client = api(bob)
    bob.is_active = False
    bob.save()
    assert_error(client.get("/api/rooms/"), 401, "not_authenticated")


def test_session_auth_needs_csrf_for_writes(bob, lobby):
    from rest_framework.test import APIClient

    client = APIClient(enforce_csrf_checks=True)
    assert client.login(username="bob", password=PASSWORD)
    assert client.get("/api/rooms/").status_code == 200
    assert_error(client.post("/api/rooms/lobby/join/", {}, format="json"), 403, "forbidden")


def test_malformed_json_is_400(api, bob, lobby):
    r = api(bob).client.post("/api/rooms/lobby/messages/", data="{not json", content_type="application/json")
    assert_error(r, 400, "bad_request")


def test_deeply_nested_json_is_400_not_500(api, bob, lobby):
    body = '{"body": ' + "[" * 10_000 + "]" * 10_000 + "}"
    r = api(bob).client.post("/api/rooms/lobby/messages/", data=body, content_type="application/json")
    assert_error(r, 400, "bad_request")


@pytest.mark.parametrize("payload", [[], "text", 5, None])
def test_body_that_is_not_an_object_is_400(api, bob, lobby, payload):
    r = api(bob).client.post("/api/rooms/", data=json.dumps(payload), content_type="application/json")
    assert_error(r, 400, "bad_request")


def test_validation_errors_are_flattened_and_readable(api, bob):
    body = assert_error(api(bob).post("/api/rooms/", {"slug": "x", "is_private": "yes"}), 400, "bad_request")
    assert "name: This field is required." in body["detail"]
    assert "is_private:" in body["detail"]


def test_form_encoded_body_is_415(api, bob, lobby):
    r = api(bob).client.post("/api/rooms/lobby/messages/", {"body": "hi"})  # multipart
    assert_error(r, 415, "unsupported_media_type")


def test_method_not_allowed_is_405_with_code(api, bob, lobby):
    assert_error(api(bob).delete("/api/rooms/"), 405, "method_not_allowed")
    assert_error(api(bob).client.put("/api/rooms/lobby/", {}, format="json"), 405, "method_not_allowed")


def test_unknown_api_path_is_json_404(api, bob):
    assert_error(api(bob).get("/api/nothing-here/"), 404, "not_found")
    # Without the trailing slash APPEND_SLASH redirects first, as for real endpoints.
    assert api(bob).get("/api/rooms").status_code == 301


def test_huge_ids_are_404_not_500(api, bob):
    assert_error(api(bob).get(f"/api/messages/{2**70}/"), 404, "not_found")
    assert_error(api(bob).get(f"/api/messages/{2**63 - 1}/"), 404, "not_found")


def test_nul_in_path_or_query_is_not_500(api, alice, bob, lobby):
    assert_error(api(alice).delete("/api/rooms/lobby/bans/a%00b/"), 404, "not_found")
    assert_error(api(bob).get("/api/search/", {"q": "a\x00b"}), 400, "bad_request")
    assert_error(api(bob).get("/api/search/", {"q": "a", "room": "lob\x00by"}), 404, "not_found")

"""REST answers the schemathesis fuzzer (tests/fuzz/test_rest_fuzz.py) found wrong, kept as regressions."""

import re

import pytest

from .conftest import assert_error

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api/rooms/%C2%87Bd/join/"),
        ("patch", "/api/messages/null%2Cnull/"),
        ("delete", "/api/rooms/%C3%8C/bans/x/"),
        ("put", "/api/messages/null/reactions/0/"),
    ],
)
def test_writes_to_paths_that_match_no_endpoint_are_json_404_not_a_csrf_page(api, bob, method, path):
    # Found by the fuzzer: with a token (no session, so no CSRF cookie), a write to
    # a path whose parameters match no route reached the catch-all view, and
    # Django's CSRF check answered with its HTML 403 page.
    client = api(bob, enforce_csrf_checks=True)
    assert_error(getattr(client.client, method)(path), 404, "not_found")


@pytest.mark.parametrize(
    "path",
    ["/api/rooms/a%0Ab/", "/api/rooms/a%0Ab/messages/", "/api/rooms/%0A/reports/1/resolve/", "/api/x%0D%0Ay/"],
)
def test_paths_with_line_breaks_are_json_404(api, bob, path):
    # Found by the fuzzer: the catch-all's "." did not match a newline, so such a
    # path reached Django's HTML 404 page instead of the API's JSON error.
    assert_error(api(bob).get(path), 404, "not_found")
    assert_error(api(bob, enforce_csrf_checks=True).post(path), 404, "not_found")


def test_query_parameters_declare_what_the_views_refuse(api):
    # Found by the fuzzer (positive_data_acceptance): limit=0, before=-1 and q= were
    # schema-valid, yet 400. The schema now says what the views accept.
    paths = api().get("/api/schema/").json()["paths"]

    def param(path: str, name: str) -> dict:
        (found,) = [p for p in paths[path]["get"]["parameters"] if p["name"] == name]
        return found["schema"]

    for path, name in [
        ("/api/rooms/{slug}/messages/", "before"),
        ("/api/rooms/{slug}/messages/", "after"),
        ("/api/mentions/", "before"),
        ("/api/search/", "offset"),
    ]:
        assert param(path, name) == {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}, (path, name)
    for path in ("/api/rooms/{slug}/messages/", "/api/mentions/", "/api/search/"):
        assert param(path, "limit") == {"type": "integer", "minimum": 1}
    q = param("/api/search/", "q")
    assert (q["minLength"], q["maxLength"]) == (1, 500)
    assert re.search(q["pattern"], "  x ") and not re.search(q["pattern"], "   ")
    assert not re.search(q["pattern"], "a\x00b")

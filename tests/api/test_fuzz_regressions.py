"""REST answers the schemathesis fuzzer (tests/fuzz/test_rest_fuzz.py) found wrong, kept as regressions."""

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

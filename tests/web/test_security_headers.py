"""Security headers on the web pages, and nothing in the templates or scripts that the CSP would block."""

import re
from pathlib import Path

import pytest
from django.test import Client

from tests.factories import PASSWORD

ROOT = Path(__file__).resolve().parents[2]


def directives(response) -> dict[str, list[str]]:
    policy = response["Content-Security-Policy"]
    parsed: dict[str, list[str]] = {}
    for part in policy.split(";"):
        name, *values = part.split()
        parsed[name] = values
    return parsed


def assert_page_headers(response) -> None:
    csp = directives(response)
    assert csp["script-src"] == ["'self'"]
    assert csp["style-src"] == ["'self'"]
    assert csp["default-src"] == ["'self'"]
    assert csp["connect-src"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["object-src"] == ["'none'"]
    assert csp["base-uri"] == ["'none'"]
    assert set(csp["img-src"]) == {"'self'", "data:", "blob:"}
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert "camera=()" in response["Permissions-Policy"]
    assert "microphone=()" in response["Permissions-Policy"]


@pytest.fixture
def logged_in(bob):
    client = Client()
    assert client.post("/accounts/login/", {"username": "bob", "password": PASSWORD}).status_code == 302
    return client


def test_login_and_signup_pages(db):
    for path in ("/accounts/login/", "/accounts/signup/"):
        response = Client().get(path)
        assert response.status_code == 200
        assert_page_headers(response)


def test_room_list_and_room_page(logged_in, lobby):
    for path in ("/", f"/rooms/{lobby.slug}/"):
        response = logged_in.get(path)
        assert response.status_code == 200, path
        assert_page_headers(response)


def test_admin_pages(alice):
    client = Client()
    assert_page_headers(client.get("/admin/login/"))
    client.force_login(alice)
    response = client.get("/admin/")
    assert response.status_code == 200
    assert_page_headers(response)


def test_api_docs_allow_inline_styles_but_never_inline_scripts(db):
    response = Client().get("/api/docs/")
    assert response.status_code == 200
    csp = directives(response)
    assert csp["script-src"] == ["'self'"]
    assert "'unsafe-inline'" in csp["style-src"]
    # The page loads its start-up code as a file, not inline.
    html = response.content.decode()
    assert re.search(r"<script>", html) is None
    script = Client().get("/api/docs/?script=")
    assert script.status_code == 200 and script["Content-Type"].startswith("application/javascript")


def test_api_responses_are_not_sniffed_or_framed(db):
    response = Client().get("/api/rooms/")
    assert response.status_code == 401
    assert response["X-Content-Type-Options"] == "nosniff"
    assert directives(response)["frame-ancestors"] == ["'none'"]


# --- what the policy would block, caught before a browser does ---------------------

TEMPLATES = sorted((ROOT / "templates").rglob("*.html")) + sorted((ROOT / "web").rglob("templates/**/*.html"))
SCRIPTS = sorted((ROOT / "static").rglob("*.js"))


def test_templates_have_no_inline_code_or_styles():
    assert TEMPLATES
    for path in TEMPLATES:
        html = path.read_text()
        where = path.relative_to(ROOT)
        assert not re.search(r"<[a-zA-Z][^>]*\son[a-z]+\s*=", html), f"{where}: an inline event handler"
        assert not re.search(r"<[a-zA-Z][^>]*\sstyle\s*=", html), f"{where}: a style attribute"
        assert "<style" not in html, f"{where}: a <style> block"
        assert "javascript:" not in html.lower(), f"{where}: a javascript: URL"
        # Only data blocks (json_script) may be inline; code comes from static files.
        for tag in re.findall(r"<script\b[^>]*>", html):
            assert "src=" in tag or 'type="application/json"' in tag, f"{where}: inline script {tag}"


def test_scripts_build_no_inline_handlers():
    assert SCRIPTS
    for path in SCRIPTS:
        js = path.read_text()
        where = path.relative_to(ROOT)
        assert not re.search(r"setAttribute\(\s*[\"'](on[a-z]+|style)[\"']", js), f"{where}: handler or style attribute"
        assert not re.search(r"\bon[a-z]+=[\\]?[\"']", js), f"{where}: an inline handler in markup"
        assert "javascript:" not in js.lower(), f"{where}: a javascript: URL"
        assert not re.search(r"\beval\(|new Function\(", js), f"{where}: eval"

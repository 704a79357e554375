"""The Content-Security-Policy in a real browser: every page works under it and none breaks it.

Chromium reports each blocked script, style, image or connection as a
`securitypolicyviolation` event and a console error; either one fails the test.
"""

import io

import pytest
from PIL import Image

from tests.factories import PASSWORD, MessageFactory
from tests.web.test_attachments_browser import server_media  # noqa: F401 - a fixture, used by name
from tests.web.test_browser import (  # noqa: F401 - fixtures, used by name
    browser,
    live_server_process,
    live_url,
    log_in,
    message_items,
    open_room,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Collects violations from the first moment of every page, before any of its scripts run.
RECORD_VIOLATIONS = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(`${e.violatedDirective} blocked ${e.blockedURI || "inline"} at ${e.sourceFile}:${e.lineNumber}`);
});
"""


def watch(page) -> list[str]:
    """Console errors about the policy, for this page from now on."""
    console: list[str] = []
    page.on(
        "console",
        lambda msg: console.append(msg.text) if msg.type == "error" and "Content Security Policy" in msg.text else None,
    )
    page.add_init_script(RECORD_VIOLATIONS)
    return console


def violations(page, console: list[str]) -> list[str]:
    return [*page.evaluate("window.__csp || []"), *console]


def test_room_page_works_under_the_policy(browser, live_url, alice, bob, lobby):  # noqa: F811
    from playwright.sync_api import expect

    MessageFactory(room=lobby, author=bob, body="Earlier, with a link: https://example.com and `code`")
    page = log_in(browser, live_url, "alice")
    console = watch(page)
    page.goto(f"{live_url}/")
    assert violations(page, console) == []

    # The websocket connects (connect-src 'self' covers ws:// to this host).
    open_room(page, live_url, "lobby")
    composer = page.get_by_label("Message", exact=True)
    for body in ("Hello *there*", "> quoted\n\n- a list\n- of two", "<img src=x onerror=alert(1)>"):
        composer.fill(body)
        composer.press("Enter")
    expect(message_items(page)).to_have_count(4)
    expect(page.locator("#conn-status[data-state=online]")).to_have_count(1)
    # The controls that build markup on the fly: a reaction and a reply.
    first = message_items(page).first
    first.hover()
    first.get_by_role("button", name="Add reaction").click()
    page.get_by_role("menuitem", name="React with 👍").click()
    expect(first.locator(".reaction-chip")).to_have_count(1)
    first.hover()
    first.get_by_role("button", name="Reply").click()
    composer.fill("a reply")
    composer.press("Enter")
    expect(message_items(page)).to_have_count(5)
    page.reload()
    page.locator("#conn-status[data-state=online]").wait_for()
    expect(message_items(page)).to_have_count(5)
    page.goto(f"{live_url}/u/bob/")

    page.wait_for_timeout(300)  # let any late report arrive
    assert violations(page, console) == [], violations(page, console)
    assert page.errors == []


def test_attachments_work_under_the_policy(server_media, browser, live_url, alice, lobby):  # noqa: F811
    """Uploading, then showing a picture (img-src 'self': it comes from /api/) and a file chip."""
    from playwright.sync_api import expect

    page = log_in(browser, live_url, "alice")
    console = watch(page)
    open_room(page, live_url, "lobby")
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Attach files").click()
    chooser.value.set_files(
        files=[
            {"name": "dot.png", "mimeType": "image/png", "buffer": small_png()},
            {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"notes\n"},
        ]
    )
    expect(page.locator("#attach-list .attach-ready")).to_have_count(2)
    page.get_by_label("Message", exact=True).press("Enter")
    last = message_items(page).last
    image = last.locator(".msg-image img")
    page.wait_for_function("img => img.complete && img.naturalWidth === 8", arg=image.element_handle())
    expect(last.locator("a.msg-file")).to_contain_text("notes.txt")
    page.reload()
    page.wait_for_function(
        "img => img.complete && img.naturalWidth === 8",
        arg=message_items(page).last.locator(".msg-image img").element_handle(),
    )
    page.wait_for_timeout(300)
    assert violations(page, console) == [], violations(page, console)
    assert page.errors == []


def small_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "#4f46e5").save(buffer, format="PNG")
    return buffer.getvalue()


def test_login_lockout_page_under_the_policy(browser, live_url, bob):  # noqa: F811
    from playwright.sync_api import expect

    page = browser.new_context().new_page()
    console = watch(page)
    for password in ["wrong"] * 5 + [PASSWORD]:
        page.goto(f"{live_url}/accounts/login/")
        page.get_by_label("Username").fill("bob")
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_load_state()
    expect(page.get_by_role("alert")).to_contain_text("Too many failed logins")
    assert page.url == f"{live_url}/accounts/login/"
    assert violations(page, console) == [], violations(page, console)


def test_policy_blocks_inline_script(browser, live_url, alice, lobby):  # noqa: F811
    """The check above can fail: an injected inline script is blocked and reported."""
    page = log_in(browser, live_url, "alice")
    console = watch(page)
    open_room(page, live_url, "lobby")
    page.evaluate(
        """() => {
          const s = document.createElement("script");
          s.textContent = "window.__ran = 1";
          document.body.appendChild(s);
        }"""
    )
    page.wait_for_timeout(300)
    assert page.evaluate("window.__ran") is None
    assert any("script-src" in v for v in violations(page, console)), violations(page, console)


def test_admin_works_under_the_policy(browser, live_url, alice, lobby):  # noqa: F811
    page = log_in(browser, live_url, "alice")
    console = watch(page)
    for path in ("/admin/", "/admin/rooms/room/", f"/admin/rooms/room/{lobby.pk}/change/", "/admin/accounts/user/"):
        response = page.goto(f"{live_url}{path}")
        assert response is not None and response.status == 200, path
        assert "'unsafe-inline'" not in response.headers["content-security-policy"]
    page.wait_for_timeout(300)
    assert violations(page, console) == [], violations(page, console)
    assert page.errors == []


def test_api_docs_work_under_their_policy(browser, live_url, alice):  # noqa: F811
    from playwright.sync_api import expect

    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    console = watch(page)
    response = page.goto(f"{live_url}/api/docs/")
    assert response is not None and response.status == 200
    # Swagger UI rendered the schema's operations.
    expect(page.locator(".opblock").first).to_be_visible(timeout=15_000)
    assert "script-src 'self';" in response.headers["content-security-policy"] + ";"
    page.wait_for_timeout(300)
    assert violations(page, console) == [], violations(page, console)
    assert errors == []

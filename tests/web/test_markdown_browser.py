"""Markdown in the room page, in Chromium: shown from the server's `html`, never the sender's HTML.

Leaves docs/screenshots/markdown.png for the docs.
"""

import pytest

from tests.factories import MessageFactory
from tests.web.test_browser import ROOT, browser, live_server_process, live_url, log_in, message_items, open_room

__all__ = ["browser", "live_server_process", "live_url"]  # fixtures, used by name

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def say(page, text: str) -> None:
    composer = page.get_by_label("Message", exact=True)
    composer.fill(text)
    composer.press("Enter")
    page.locator("#pending-list li").first.wait_for(state="detached")


def test_markdown_is_shown_formatted_and_safe(browser, live_url, alice, bob, lobby):
    from playwright.sync_api import expect

    MessageFactory(room=lobby, author=bob, body="Can someone post the **deploy** steps? `make deploy` failed for me.")
    alice_page = log_in(browser, live_url, "alice")
    bob_page = log_in(browser, live_url, "bob")
    open_room(alice_page, live_url, "lobby")
    open_room(bob_page, live_url, "lobby")
    first = message_items(alice_page).first
    expect(first.locator(".msg-body strong")).to_have_text("deploy")
    expect(first.locator(".msg-body code")).to_have_text("make deploy")

    # Shift+Enter makes new lines in the composer; Enter sends.
    composer = alice_page.get_by_label("Message", exact=True)
    composer.click()
    for n, line in enumerate(
        [
            "@bob here you go:",
            "```",
            "git pull --rebase && make migrate && make deploy ENV=production REGION=eu-west-1 ROLLOUT=canary",
            "```",
            "> if it fails, _roll back_ first",
            "- check https://status.example.com",
            "- <img src=x onerror=window.__pwned=1> is just text",
        ]
    ):
        if n:
            composer.press("Shift+Enter")
        composer.type(line)
    composer.press("Enter")
    alice_page.locator("#pending-list li").first.wait_for(state="detached")

    for page in (alice_page, bob_page):
        body = message_items(page).last.locator(".msg-body")
        expect(body.locator("pre code")).to_contain_text("make deploy ENV=production")
        expect(body.locator("blockquote em")).to_have_text("roll back")
        expect(body.locator("li")).to_have_count(2)
        expect(body.locator("li").last).to_have_text("<img src=x onerror=window.__pwned=1> is just text")
        assert page.locator("#message-list img").count() == 0
        assert page.evaluate("window.__pwned") is None
        link = body.get_by_role("link", name="https://status.example.com")
        expect(link).to_have_attribute("target", "_blank")
        expect(link).to_have_attribute("rel", "nofollow noopener noreferrer")
        # A long line scrolls inside its block, in a monospaced font.
        pre = body.locator("pre")
        assert pre.evaluate("e => getComputedStyle(e).overflowX") == "auto"
        assert "mono" in pre.evaluate("e => getComputedStyle(e).fontFamily")
        assert not page.errors

    # The mention is a link to Bob; in the page it opens his card.
    mention = message_items(alice_page).last.locator("a.mention")
    expect(mention).to_have_text("@bob")
    expect(mention).to_have_attribute("href", "/u/bob/")
    mention.click()
    card = alice_page.get_by_role("dialog", name="Bob")
    expect(card).to_contain_text("@bob")
    expect(card.get_by_role("button", name="Message Bob")).to_be_visible()
    alice_page.keyboard.press("Escape")

    # Bob answers; Alice sees it formatted live.
    say(bob_page, "thanks, *trying now*")
    expect(message_items(alice_page).last.locator(".msg-body em")).to_have_text("trying now")
    bob_page.set_viewport_size({"width": 1100, "height": 640})
    bob_page.screenshot(path=str(ROOT / "docs" / "screenshots" / "markdown.png"))

"""Replies and reactions in the room page, in Chromium (issue 8, parts 2 and 3).

Leaves docs/screenshots/replies-reactions.png for the docs.
"""

import re

import pytest

from messaging.models import Message, Reaction
from tests.factories import MessageFactory
from tests.web.test_browser import ROOT, browser, live_server_process, live_url, log_in, message_items, open_room

__all__ = ["browser", "live_server_process", "live_url"]  # fixtures, used by name

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_reply_and_react_in_the_page(browser, live_url, alice, bob, carol, lobby):
    from playwright.sync_api import expect

    question = MessageFactory(room=lobby, author=bob, body="Who can review the replies and reactions PR today?")
    for n, body in enumerate(
        [
            "Standup moved to 10:30.",
            "The staging deploy is green again.",
            "Lunch order goes out at noon, add yourself to the sheet.",
            "Reminder: the release branch is cut on Thursday.",
            "Has anyone seen the flaky websocket test lately?",
            "It was the idle timeout; fixed on main.",
        ]
    ):
        MessageFactory(room=lobby, author=(alice, carol)[n % 2], body=body)

    alice_page = log_in(browser, live_url, "alice")
    bob_page = log_in(browser, live_url, "bob")
    for page in (alice_page, bob_page):
        page.set_viewport_size({"width": 1280, "height": 560})  # short: the original scrolls out of view
        open_room(page, live_url, "lobby")

    # Alice replies to Bob's question: the action, the bar above the composer, the quote above the reply.
    original = message_items(alice_page).first
    original.hover()
    original.get_by_role("button", name="Reply").click()
    expect(alice_page.locator("#reply-bar")).to_be_visible()
    expect(alice_page.locator("#reply-bar")).to_contain_text("Replying to Bob")
    composer = alice_page.get_by_label("Message", exact=True)
    composer.fill("I can, right after lunch.")
    composer.press("Enter")
    expect(alice_page.locator("#reply-bar")).to_be_hidden()
    for page in (alice_page, bob_page):
        reply = message_items(page).last
        expect(reply.locator(".msg-body")).to_have_text("I can, right after lunch.")
        expect(reply.locator(".msg-quote")).to_contain_text("Bob")
        expect(reply.locator(".msg-quote")).to_contain_text("Who can review the replies and reactions PR today?")
    stored = Message.objects.get(body="I can, right after lunch.")
    assert stored.reply_to_id == question.pk

    # Esc drops a reply in progress.
    message_items(alice_page).nth(3).hover()
    message_items(alice_page).nth(3).get_by_role("button", name="Reply").click()
    expect(alice_page.locator("#reply-bar")).to_be_visible()
    composer.press("Escape")
    expect(alice_page.locator("#reply-bar")).to_be_hidden()

    # Bob reacts from the picker; both pages show the chip, pressed only for Bob.
    reply_on_bob = message_items(bob_page).last
    reply_on_bob.hover()
    reply_on_bob.get_by_role("button", name="Add reaction").click()
    bob_page.get_by_role("menuitem", name="React with 🎉").click()
    for page, pressed in ((bob_page, "true"), (alice_page, "false")):
        chip = message_items(page).last.locator(".reaction-chip", has_text="🎉")
        expect(chip).to_have_text("🎉1")
        expect(chip).to_have_attribute("aria-pressed", pressed)

    # Alice toggles the chip on, off and on again; Bob sees the counts live.
    chip = message_items(alice_page).last.locator(".reaction-chip", has_text="🎉")
    bob_chip = message_items(bob_page).last.locator(".reaction-chip", has_text="🎉")
    chip.click()
    expect(chip).to_have_text("🎉2")
    expect(chip).to_have_attribute("aria-pressed", "true")
    expect(bob_chip).to_have_text("🎉2")
    chip.click()
    expect(chip).to_have_text("🎉1")
    expect(chip).to_have_attribute("aria-pressed", "false")
    expect(bob_chip).to_have_text("🎉1")
    chip.click()
    expect(bob_chip).to_have_text("🎉2")
    # And adds a 👍 to the question and a ❤️ to her own reply.
    first = message_items(alice_page).first
    first.hover()
    first.get_by_role("button", name="Add reaction").click()
    alice_page.get_by_role("menuitem", name="React with 👍").click()
    expect(message_items(bob_page).first.locator(".reaction-chip")).to_have_text("👍1")
    last = message_items(alice_page).last
    last.hover()
    last.get_by_role("button", name="Add reaction").click()
    alice_page.get_by_role("menuitem", name="React with ❤️").click()
    expect(message_items(bob_page).last.locator(".reaction-chip")).to_have_count(2)
    assert sorted(Reaction.objects.filter(message=stored).values_list("emoji", "user__username")) == sorted(
        [("🎉", "bob"), ("🎉", "alice"), ("❤️", "alice")]
    )

    # The quote scrolls to the original, which flashes.
    expect(message_items(bob_page).first).not_to_be_in_viewport()
    message_items(bob_page).last.locator(".msg-quote").click()
    expect(message_items(bob_page).first).to_be_in_viewport()
    expect(message_items(bob_page).first).to_have_class(re.compile(r"\bmsg-flash\b"))

    # Editing the original updates the quote live; a reload renders reactions with `me`.
    alice_page.reload()
    alice_page.locator("#conn-status[data-state=online]").wait_for()
    reloaded = message_items(alice_page).last
    expect(reloaded.locator(".reaction-chip", has_text="🎉")).to_have_attribute("aria-pressed", "true")
    expect(reloaded.locator(".msg-quote")).to_contain_text("Who can review")

    alice_page.set_viewport_size({"width": 1280, "height": 800})
    alice_page.evaluate("document.getElementById('messages').scrollTop = 1e9")
    alice_page.mouse.move(5, 5)
    screenshots = ROOT / "docs" / "screenshots"
    screenshots.mkdir(parents=True, exist_ok=True)
    alice_page.wait_for_timeout(300)
    alice_page.screenshot(path=str(screenshots / "replies-reactions.png"))
    assert alice_page.errors == [] and bob_page.errors == []

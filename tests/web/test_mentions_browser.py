"""Mentions in a real browser: live mention and unread badges on the room list and the sidebar,
and a notification for a mention while the tab is hidden (Chromium via Playwright)."""

import pytest

from rooms.services import room_join
from tests.factories import MessageFactory, RoomFactory
from tests.web.test_browser import (  # noqa: F401 - fixtures, used by name
    ROOT,
    browser,
    live_server_process,
    live_url,
    log_in,
    open_room,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# The page's view of visibility and notifications, under the test's control: headless
# Chromium never hides a tab, and a real notification cannot be read back.
FAKE_NOTIFICATIONS = """
window.__hidden = false;
Object.defineProperty(document, "visibilityState", { get: () => (window.__hidden ? "hidden" : "visible") });
window.__notes = [];
window.Notification = class {
  constructor(title, options) { window.__notes.push({ title, body: options && options.body }); }
  addEventListener() {}
  close() {}
  static requestPermission() {
    sessionStorage.setItem("notification-permission", "granted");
    window.Notification.permission = "granted";
    return Promise.resolve("granted");
  }
};
// Kept across reloads, as the browser keeps a granted permission.
window.Notification.permission = sessionStorage.getItem("notification-permission") || "default";
"""


def badge(page, slug: str, kind: str):
    return page.locator(f'[data-badges="{slug}"] .{kind}')


def say(page, text: str) -> None:
    composer = page.get_by_label("Message", exact=True)
    composer.fill(text)
    composer.press("Enter")
    page.locator("#pending-list li").first.wait_for(state="detached")


def test_mention_and_unread_badges_appear_live(browser, live_url, alice, bob, carol, lobby):  # noqa: F811
    from playwright.sync_api import expect

    random = RoomFactory(slug="random", name="Random", created_by=alice, description="Off-topic")
    design = RoomFactory(slug="design", name="Design", created_by=alice, description="Mockups and reviews")
    for room in (lobby, random, design):
        room_join(room=room, user=bob)
    MessageFactory(room=design, author=alice, body="Old news")

    alice_page = log_in(browser, live_url, "alice")
    carol_page = log_in(browser, live_url, "carol")
    bob_page = log_in(browser, live_url, "bob")
    bob_page.add_init_script(FAKE_NOTIFICATIONS)
    bob_page.reload()
    # The room list: nothing new for bob yet; notifications are offered, not asked for.
    expect(badge(bob_page, "lobby", "mention-badge")).to_be_hidden()
    expect(badge(bob_page, "lobby", "unread")).to_be_hidden()
    enable = bob_page.get_by_role("button", name="Turn on notifications")
    expect(enable).to_be_visible()
    enable.click()
    expect(enable).to_be_hidden()
    assert bob_page.evaluate("Notification.permission") == "granted"
    bob_page.wait_for_timeout(500)  # the list's socket joins bob's rooms

    open_room(alice_page, live_url, "lobby")
    open_room(carol_page, live_url, "random")
    say(alice_page, "@bob can you look at the release notes?")
    say(carol_page, "Anyone for lunch?")
    say(alice_page, "Thanks @carol, and @Bob: the deploy is at 3.")

    expect(badge(bob_page, "lobby", "mention-badge")).to_have_text("@2 mentions")
    expect(badge(bob_page, "lobby", "unread")).to_have_text("2 unread")
    expect(badge(bob_page, "random", "unread")).to_have_text("1 unread")
    expect(badge(bob_page, "random", "mention-badge")).to_be_hidden()
    expect(badge(bob_page, "design", "unread")).to_have_text("1 unread")  # from before the page loaded
    # The tab is visible: no notification.
    assert bob_page.evaluate("window.__notes") == []

    # The same counts after a reload, from GET /api/rooms/ and the server-rendered page;
    # notifications are on, so they are no longer offered.
    bob_page.reload()
    expect(bob_page.locator("#notify-panel")).to_be_hidden()
    expect(badge(bob_page, "lobby", "mention-badge")).to_have_text("@2 mentions")
    expect(badge(bob_page, "lobby", "unread")).to_have_text("2 unread")
    bob_page.wait_for_timeout(500)

    # While the tab is hidden, a mention shows a notification as well.
    bob_page.evaluate("window.__hidden = true")
    say(carol_page, "@bob are you joining?")
    expect(badge(bob_page, "random", "mention-badge")).to_have_text("@1 mention")
    expect(badge(bob_page, "random", "unread")).to_have_text("2 unread")
    bob_page.wait_for_function("window.__notes.length === 1")
    assert bob_page.evaluate("window.__notes") == [
        {"title": "Carol mentioned you in Random", "body": "@bob are you joining?"}
    ]
    bob_page.evaluate("window.__hidden = false")
    bob_page.wait_for_timeout(300)
    screenshots = ROOT / "docs" / "screenshots"
    screenshots.mkdir(parents=True, exist_ok=True)
    bob_page.screenshot(path=str(screenshots / "room-list-badges.png"))

    # In a room, the sidebar counts the other rooms live; the open room is read, never badged.
    open_room(bob_page, live_url, "lobby")
    expect(badge(bob_page, "lobby", "mention-badge")).to_be_hidden()
    expect(badge(bob_page, "random", "mention-badge")).to_have_text("@1 mention")
    bob_page.wait_for_timeout(500)
    say(carol_page, "@bob one more thing")
    expect(badge(bob_page, "random", "mention-badge")).to_have_text("@2 mentions")
    expect(badge(bob_page, "random", "unread")).to_have_text("3 unread")
    say(alice_page, "@bob see above")
    expect(bob_page.locator("#message-list > li.msg").last.locator(".msg-body")).to_have_text("@bob see above")
    expect(badge(bob_page, "lobby", "mention-badge")).to_be_hidden()
    assert bob_page.errors == [] and alice_page.errors == [] and carol_page.errors == []

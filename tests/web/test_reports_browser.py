"""Reporting a message from the room page, in Chromium (issue 10, part 1).

Leaves docs/screenshots/report.png for the docs.
"""

import pytest

from messaging.models import Report
from tests.factories import MessageFactory
from tests.web.test_browser import ROOT, browser, live_server_process, live_url, log_in, message_items, open_room

__all__ = ["browser", "live_server_process", "live_url"]  # fixtures, used by name

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_report_someone_elses_message_from_the_page(browser, live_url, alice, bob, lobby):
    from playwright.sync_api import expect

    MessageFactory(room=lobby, author=alice, body="Welcome to the lobby!")
    spam = MessageFactory(room=lobby, author=alice, body="Buy cheap watches at example.com!!!")
    page = log_in(browser, live_url, "bob")
    page.set_viewport_size({"width": 1280, "height": 640})
    open_room(page, live_url, "lobby")

    target = message_items(page).last
    target.hover()
    target.get_by_role("button", name="Report this message to the moderators").click()
    dialog = page.get_by_role("dialog", name="Report message")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Buy cheap watches")
    # An empty reason is refused in the page, before any request.
    dialog.get_by_role("button", name="Report").click()
    expect(dialog.get_by_role("alert")).to_contain_text("what is wrong")
    assert not Report.objects.exists()

    reason = dialog.get_by_label("Why should the moderators look at it?")
    reason.fill("Spam, posted in every room.")
    page.screenshot(path=str(ROOT / "docs" / "screenshots" / "report.png"))
    dialog.get_by_role("button", name="Report").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#banner")).to_contain_text("Reported")
    target.hover()
    done = target.get_by_role("button", name="Reported to the moderators")
    expect(done).to_be_disabled()
    report = Report.objects.get()
    assert (report.message_id, report.reporter_id, report.reason) == (spam.pk, bob.pk, "Spam, posted in every room.")

    # Own messages have no Report action; Escape closes the dialog without reporting.
    composer = page.get_by_label("Message", exact=True)
    composer.fill("my own words")
    composer.press("Enter")
    mine = message_items(page).last
    expect(mine.locator(".msg-body")).to_have_text("my own words")
    mine.hover()
    expect(mine.get_by_role("button", name="Report this message to the moderators")).to_have_count(0)
    first = message_items(page).first
    first.hover()
    first.get_by_role("button", name="Report this message to the moderators").click()
    expect(dialog).to_be_visible()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    assert Report.objects.count() == 1

"""Attachments in the room page, in Chromium: attach, upload with progress, send, and see them rendered.

Leaves docs/screenshots/rich-message.png for the docs: a fenced code block and a
picture with a file, as the page shows them.
"""

import io

import pytest
from PIL import Image, ImageDraw

from messaging.models import Attachment, Message
from tests.factories import MessageFactory
from tests.web.test_browser import ROOT, browser, live_server_process, live_url, log_in, message_items, open_room

__all__ = ["browser", "live_server_process", "live_url"]  # fixtures, used by name

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def server_media(tmp_path, monkeypatch, settings):
    """The live server (started after this fixture) and this process store files in the same tmp folder."""
    folder = tmp_path / "media"
    monkeypatch.setenv("DJANGO_MEDIA_ROOT", str(folder))
    settings.MEDIA_ROOT = str(folder)
    return folder


def chart_png() -> bytes:
    """A small bar chart, so the screenshot shows something that looks like a real picture."""
    image = Image.new("RGB", (480, 270), "#f8fafc")
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, 479, 36), fill="#4f46e5")
    draw.text((14, 12), "p95 latency per release (ms)", fill="white")
    for n, (height, color) in enumerate([(150, "#94a3b8"), (132, "#94a3b8"), (118, "#94a3b8"), (74, "#22c55e")]):
        left = 40 + n * 105
        draw.rectangle((left, 250 - height, left + 70, 250), fill=color)
        draw.text((left + 18, 254 - height - 18), f"{height}", fill="#1c2230")
    draw.line((30, 250, 460, 250), fill="#64748b", width=2)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_code_and_a_picture_rendered_in_the_page(server_media, browser, live_url, alice, bob, lobby):
    from playwright.sync_api import expect

    MessageFactory(room=lobby, author=bob, body="Did the canary release fix the latency regression?")
    alice_page = log_in(browser, live_url, "alice")
    bob_page = log_in(browser, live_url, "bob")
    for page in (alice_page, bob_page):
        page.set_viewport_size({"width": 1280, "height": 900})
        open_room(page, live_url, "lobby")

    # A fenced code block (Shift+Enter for new lines).
    composer = alice_page.get_by_label("Message", exact=True)
    composer.click()
    for n, line in enumerate(["Yes, rolled out with:", "```", "make deploy ENV=production ROLLOUT=canary", "```"]):
        if n:
            composer.press("Shift+Enter")
        composer.type(line)
    composer.press("Enter")
    alice_page.locator("#pending-list li").first.wait_for(state="detached")

    # A picture through the paperclip: the file chooser, a progress bar, then a ready chip.
    with alice_page.expect_file_chooser() as chooser:
        alice_page.get_by_role("button", name="Attach files").click()
    chooser.value.set_files(files=[{"name": "latency.png", "mimeType": "image/png", "buffer": chart_png()}])
    chips = alice_page.locator("#attach-list .attach-chip")
    expect(chips).to_have_count(1)
    expect(alice_page.locator("#attach-list .attach-ready")).to_have_count(1)

    # A file dropped on the composer joins it; another one is removed again before sending.
    for name, text in (("notes.txt", "release notes\n"), ("oops.txt", "not this one")):
        transfer = alice_page.evaluate_handle(
            "([name, text]) => { const dt = new DataTransfer();"
            " dt.items.add(new File([text], name, {type: 'text/plain'})); return dt; }",
            [name, text],
        )
        alice_page.dispatch_event("#composer", "dragenter", {"dataTransfer": transfer})
        alice_page.dispatch_event("#composer", "drop", {"dataTransfer": transfer})
    expect(alice_page.locator("#attach-list .attach-ready")).to_have_count(3)
    alice_page.get_by_role("button", name="Remove oops.txt").click()
    expect(chips).to_have_count(2)

    composer.fill("p95 after the canary:")
    composer.press("Enter")
    alice_page.locator("#pending-list li").first.wait_for(state="detached")
    expect(alice_page.locator("#attach-list")).to_be_hidden()

    for page in (alice_page, bob_page):
        code = message_items(page).nth(1)
        expect(code.locator(".msg-body pre code")).to_have_text("make deploy ENV=production ROLLOUT=canary")
        last = message_items(page).last
        expect(last.locator(".msg-body")).to_have_text("p95 after the canary:")
        image = last.locator(".msg-image img")
        expect(image).to_have_attribute("alt", "latency.png")
        expect(image).to_have_attribute("loading", "lazy")
        page.wait_for_function("img => img.complete && img.naturalWidth === 480", arg=image.element_handle())
        link = last.locator("a.msg-image")
        expect(link).to_have_attribute("target", "_blank")
        chip = last.locator("a.msg-file")
        expect(chip).to_contain_text("notes.txt")
        expect(chip).to_contain_text("14 B")
        assert not page.errors, page.errors

    stored = Message.objects.get(body="p95 after the canary:")
    files = list(Attachment.objects.filter(message=stored).order_by("position"))
    assert [(a.name, a.is_image, a.width) for a in files] == [("latency.png", True, 480), ("notes.txt", False, None)]
    # The removed upload stays unused until the cleanup command takes it.
    assert Attachment.objects.filter(message__isnull=True).values_list("name", flat=True).get() == "oops.txt"

    # The full-size picture opens in a new tab, served inline as an image.
    with alice_page.context.expect_page() as opened:
        message_items(alice_page).last.locator("a.msg-image").click()
    tab = opened.value
    tab.wait_for_load_state()
    assert tab.evaluate("document.contentType") == "image/png"
    tab.close()

    message_items(alice_page).last.scroll_into_view_if_needed()
    alice_page.mouse.move(5, 5)  # no hover actions in the picture
    alice_page.evaluate("document.activeElement.blur()")
    alice_page.screenshot(path=str(ROOT / "docs" / "screenshots" / "rich-message.png"))


def test_a_file_over_the_limit_is_refused_in_the_page(server_media, browser, live_url, alice, lobby, settings):
    from playwright.sync_api import expect

    page = log_in(browser, live_url, "alice")
    open_room(page, live_url, "lobby")
    # The page knows the server's limit and refuses before uploading.
    limit = page.evaluate("JSON.parse(document.getElementById('chat-boot').textContent).max_upload_bytes")
    assert limit == settings.CHAT_MAX_UPLOAD_BYTES
    page.set_input_files(
        "#attach-input",
        files=[{"name": "huge.bin", "mimeType": "application/octet-stream", "buffer": b"x" * (limit + 1)}],
    )
    chip = page.locator("#attach-list .attach-failed")
    expect(chip).to_contain_text("too large")
    assert not Attachment.objects.exists()
    # Nothing to send: Enter with only a failed file does nothing.
    page.get_by_label("Message", exact=True).press("Enter")
    assert page.locator("#pending-list li").count() == 0

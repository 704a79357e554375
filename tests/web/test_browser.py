"""The room page in a real browser (Chromium via Playwright) against a real server.

The server is the one `make run` uses (uvicorn), or daphne with CHAT_TEST_SERVER=daphne.

Sync tests on purpose: Playwright's sync API refuses to run inside an event loop.
"""

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connections

from messaging.models import Message
from rooms.models import Room
from tests.conftest import chromium_path
from tests.factories import PASSWORD, MessageFactory
from tests.integration.servers import server_kind_under_test

ROOT = Path(__file__).resolve().parents[2]
DAPHNE = str(Path(sys.executable).parent / "daphne")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _test_database_url() -> str:
    db = connections["default"].settings_dict
    if connections["default"].vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    credentials = quote(db["USER"] or "") + (f":{quote(db['PASSWORD'])}" if db.get("PASSWORD") else "")
    return f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


class LiveServer:
    """`config.asgi:application` served as `make run` serves it, on this run's test database.

    A fresh process rather than a fork of this one (as ChannelsLiveServerTestCase
    does): a fork inherits whatever earlier async tests left in module state.
    `stop()` and `start()` again keep the port, as a restarted server would.
    """

    def __init__(self, log_dir: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.kind = server_kind_under_test()
        self.log_path = log_dir / f"{self.kind}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "DATABASE_URL": _test_database_url(),
            "PYTHONUNBUFFERED": "1",
        }
        # A short shutdown grace: the test restarts the server while pages keep their sockets open.
        if self.kind == "uvicorn":
            cmd = [sys.executable, "-m", "config.serve", "--host", "127.0.0.1", "--port", str(self.port)]
            cmd += ["--timeout-graceful-shutdown", "2"]
        else:
            cmd = [DAPHNE, "-b", "127.0.0.1", "-p", str(self.port), "--application-close-timeout", "2"]
            cmd += ["config.asgi:application"]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                cmd,
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        _wait_until_up(self.url, self.process, self.log_path)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        _forget_redis_keys(self.process.pid)
        self.process = None
        _wait_for_other_sessions_to_end()


@pytest.fixture
def live_server_process(transactional_db, tmp_path) -> Iterator[LiveServer]:
    """Tests must commit their data (transactional_db) for the server to see it."""
    if connections["default"].vendor == "sqlite" and connections["default"].is_in_memory_db():
        pytest.fail("the live server needs a file or server database, not in-memory SQLite")
    server = LiveServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def live_url(live_server_process: LiveServer) -> str:
    return live_server_process.url


def _wait_until_up(url: str, server: subprocess.Popen, log_path: Path, timeout: float = 30) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited:\n{log_path.read_text()[-4000:]}")
        try:
            with opener.open(f"{url}/healthz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the server did not answer on {url}:\n{log_path.read_text()[-4000:]}")


def _forget_redis_keys(pid: int) -> None:
    """The server's settings (config.settings.test) put its Redis keys under `t<pid>:`."""
    if not settings.REDIS_URL:
        return
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"t{pid}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def _wait_for_other_sessions_to_end(timeout: float = 10) -> None:
    """PostgreSQL notices the killed server's connections a moment later; dropping
    the test database at the end of the run fails while they linger."""
    connection = connections["default"]
    if connection.vendor != "postgresql":
        return
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            if cursor.fetchone()[0] == 0:
                return
            time.sleep(0.1)


@pytest.fixture
def browser(live_url, monkeypatch):
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop under the test; the ORM calls
    # the test makes meanwhile are plain synchronous ones (as Django's docs
    # advise for Playwright).
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            yield instance
        finally:
            instance.close()
            # The ORM calls made under Playwright's loop got their own
            # connection (asgiref's Local is per context there); close it here,
            # in that same context, or it blocks dropping the test database.
            connections.close_all()


def log_in(browser, live_url: str, username: str):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    page.goto(f"{live_url}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_url}/")
    return page


def open_room(page, live_url: str, slug: str) -> None:
    page.goto(f"{live_url}/rooms/{slug}/")
    page.locator("#conn-status[data-state=online]").wait_for()


def message_items(page):
    return page.locator("#message-list > li.msg")


def test_two_users_chat_live(browser, live_url, alice, bob, lobby):
    from playwright.sync_api import expect

    alice_page = log_in(browser, live_url, "alice")
    bob_page = log_in(browser, live_url, "bob")
    open_room(alice_page, live_url, "lobby")
    open_room(bob_page, live_url, "lobby")
    expect(alice_page.locator("#online-list")).to_contain_text("Bob")

    composer = alice_page.get_by_label("Message", exact=True)
    composer.fill("Hello Bob")
    composer.press("Enter")

    received = message_items(bob_page).last
    expect(received.locator(".msg-body")).to_have_text("Hello Bob")
    expect(received.locator(".msg-author")).to_have_text("Alice")
    expect(composer).to_have_value("")

    # Shift+Enter is a new line, not a send.
    composer.type("line one")
    composer.press("Shift+Enter")
    composer.type("line two")
    expect(composer).to_have_value("line one\nline two")
    bob_page.wait_for_timeout(300)
    expect(message_items(bob_page)).to_have_count(1)
    composer.press("Enter")
    expect(message_items(bob_page)).to_have_count(2)
    assert message_items(bob_page).last.locator(".msg-body").text_content() == "line one\nline two"

    # Markup in a body is text, for the sender and everyone else.
    for body in ("<b>x</b>", "<script>window.__pwned = 1</script>", '<img src=x onerror="window.__pwned=1">'):
        composer.fill(body)
        composer.press("Enter")
        for page in (alice_page, bob_page):
            expect(message_items(page).last.locator(".msg-body")).to_have_text(body)
    for page in (alice_page, bob_page):
        assert page.locator("#message-list b, #message-list script, #message-list img").count() == 0
        assert page.evaluate("window.__pwned") is None

    # Each send is stored once, in order, under alice's name.
    assert list(Message.objects.order_by("seq").values_list("seq", "author__username")) == [
        (n, "alice") for n in range(1, 6)
    ]
    # A reload renders the history server-side, literally too.
    bob_page.reload()
    bob_page.locator("#conn-status[data-state=online]").wait_for()
    expect(message_items(bob_page)).to_have_count(5)
    expect(message_items(bob_page).nth(2).locator(".msg-body")).to_have_text("<b>x</b>")
    assert bob_page.locator("#message-list b").count() == 0

    assert alice_page.errors == [] and bob_page.errors == []


def test_typing_indicator_and_locked_room(browser, live_url, alice, bob, lobby):
    from playwright.sync_api import expect

    alice_page = log_in(browser, live_url, "alice")
    bob_page = log_in(browser, live_url, "bob")
    open_room(alice_page, live_url, "lobby")
    open_room(bob_page, live_url, "lobby")

    bob_page.get_by_label("Message", exact=True).type("hel")
    expect(alice_page.locator("#typing")).to_have_text("Bob is typing…")
    assert bob_page.locator("#typing").text_content() == ""

    # A locked room's page comes with the composer off.
    Room.objects.filter(pk=lobby.pk).update(is_locked=True)
    bob_page.reload()
    expect(bob_page.get_by_label("Message", exact=True)).to_be_disabled()
    expect(bob_page.locator("#locked-badge")).to_be_visible()
    assert alice_page.errors == [] and bob_page.errors == []


def test_edit_and_delete_in_place(browser, live_url, alice, bob, lobby):
    """Edit and delete go through the REST API (with the page's CSRF token) and reach others live."""
    from playwright.sync_api import expect

    MessageFactory(room=lobby, author=bob, body="bob was here")
    alice_page = log_in(browser, live_url, "alice")
    bob_page = log_in(browser, live_url, "bob")
    open_room(alice_page, live_url, "lobby")
    open_room(bob_page, live_url, "lobby")
    alice_page.on("dialog", lambda dialog: dialog.accept())

    composer = alice_page.get_by_label("Message", exact=True)
    composer.fill("tpyo")
    composer.press("Enter")
    mine = message_items(alice_page).last
    expect(mine.locator(".msg-body")).to_have_text("tpyo")
    mine.hover()
    mine.get_by_role("button", name="Edit").click()
    editor = mine.get_by_label("Edit message")
    editor.fill("typo fixed")
    editor.press("Enter")
    theirs = message_items(bob_page).last
    expect(theirs.locator(".msg-body")).to_have_text("typo fixed")
    expect(theirs.locator(".msg-edited")).to_have_text("(edited)")
    # Others may not edit or delete alice's message (her name is a button: it opens her card).
    theirs.hover()
    assert theirs.get_by_role("button", name=re.compile("Edit|Delete")).count() == 0

    # Alice is staff: she may delete bob's message too.
    bobs = message_items(alice_page).first
    bobs.hover()
    bobs.get_by_role("button", name="Delete").click()
    expect(message_items(bob_page).first.locator(".msg-body")).to_have_text("This message was deleted.")
    expect(message_items(bob_page).first).to_have_class(re.compile(r"\bmsg-deleted\b"))

    stored = [(m.body, m.deleted_at is not None, m.edited_at is not None) for m in Message.objects.order_by("seq")]
    assert stored == [("bob was here", True, False), ("typo fixed", False, True)]
    assert alice_page.errors == [] and bob_page.errors == []


def test_older_history_pages_in(browser, live_url, alice, lobby):
    from playwright.sync_api import expect

    for n in range(1, 61):
        MessageFactory(room=lobby, author=alice, body=f"message {n}")
    page = log_in(browser, live_url, "alice")
    open_room(page, live_url, "lobby")
    expect(message_items(page)).to_have_count(50)
    expect(message_items(page).first.locator(".msg-body")).to_have_text("message 11")
    page.get_by_role("button", name="Load older messages").click()
    expect(message_items(page)).to_have_count(60)
    expect(message_items(page).first.locator(".msg-body")).to_have_text("message 1")
    expect(page.get_by_text("This is the beginning of #lobby.")).to_be_visible()
    assert page.errors == []


def test_reconnects_catches_up_and_resends_unacknowledged(browser, live_server_process, alice, bob, lobby):
    """A server restart: both tabs reconnect with `after`, and a message typed while
    offline is sent once, with its client_id, when the socket is back."""
    from playwright.sync_api import expect

    url = live_server_process.url
    alice_page = log_in(browser, url, "alice")
    bob_page = log_in(browser, url, "bob")
    open_room(alice_page, url, "lobby")
    open_room(bob_page, url, "lobby")

    live_server_process.stop()
    expect(alice_page.locator("#conn-status")).to_have_attribute("data-state", "offline")
    composer = alice_page.get_by_label("Message", exact=True)
    composer.fill("sent while offline")
    composer.press("Enter")
    pending = alice_page.locator("#pending-list > li")
    expect(pending.locator(".msg-status")).to_have_text("sending…")
    # Posted by someone else while bob's tab is away: it must be replayed to him.
    MessageFactory(room=lobby, author=alice, body="posted during the outage")

    live_server_process.start()
    for page in (alice_page, bob_page):
        expect(page.locator("#conn-status")).to_have_attribute("data-state", "online", timeout=20_000)
        expect(message_items(page).locator(".msg-body")).to_have_text(
            ["posted during the outage", "sent while offline"]
        )
    expect(pending).to_have_count(0)
    assert list(Message.objects.order_by("seq").values_list("body", flat=True)) == [
        "posted during the outage",
        "sent while offline",
    ]
    assert alice_page.errors == [] and bob_page.errors == []


def test_admin_moderation_reaches_the_open_page(browser, live_url, alice, bob, lobby):
    """Staff soft-delete a message and deactivate a user in /admin/; bob's open tab sees both at once."""
    from playwright.sync_api import expect

    target = MessageFactory(room=lobby, author=bob, body="something rude")
    bob_page = log_in(browser, live_url, "bob")
    open_room(bob_page, live_url, "lobby")
    admin = log_in(browser, live_url, "alice")

    admin.goto(f"{live_url}/admin/messaging/message/")
    admin.locator(f"input[name=_selected_action][value='{target.pk}']").check()
    admin.locator("select[name=action]").select_option("soft_delete_messages")
    admin.get_by_role("button", name="Go").click()
    expect(admin.locator(".messagelist")).to_contain_text("Deleted 1 message")
    expect(message_items(bob_page).first.locator(".msg-body")).to_have_text("This message was deleted.")

    admin.goto(f"{live_url}/admin/accounts/user/")
    admin.locator(f"input[name=_selected_action][value='{bob.pk}']").check()
    admin.locator("select[name=action]").select_option("deactivate_users")
    admin.get_by_role("button", name="Go").click()
    expect(bob_page.locator("#banner")).to_have_text("Your account has been deactivated. Contact an administrator.")
    expect(bob_page.get_by_label("Message", exact=True)).to_be_disabled()
    # 4403 means stay away: no reconnect attempts.
    bob_page.wait_for_timeout(1500)
    expect(bob_page.locator("#conn-status")).to_have_text("Disconnected")
    assert bob_page.errors == [] and admin.errors == []


def test_message_a_person_opens_the_direct_message(browser, live_url, alice, bob, lobby):
    """ "Message" on a person (online list, or an author's name) opens the DM of the two and goes there;
    from either side it is the same room. Leaves a screenshot of the DM for the docs."""
    from playwright.sync_api import expect

    MessageFactory(room=lobby, author=bob, body="Could someone review the DM pull request?")
    alice_page = log_in(browser, live_url, "alice")
    bob_page = log_in(browser, live_url, "bob")
    open_room(alice_page, live_url, "lobby")
    open_room(bob_page, live_url, "lobby")

    # Bob: "Message" next to Alice in the room's online list.
    online = bob_page.locator("#online-list")
    expect(online).to_contain_text("Alice")
    online.get_by_role("button", name="Message Alice").click()
    bob_page.wait_for_url(re.compile(r"/rooms/dm-[0-9a-f]{12}/$"))
    dm_url = bob_page.url
    bob_page.locator("#conn-status[data-state=online]").wait_for()
    expect(bob_page.get_by_role("heading", level=1)).to_have_text("Alice")
    expect(bob_page.get_by_label("Message", exact=True)).to_have_attribute("placeholder", "Message Alice")
    dm = Room.objects.get(kind=Room.Kind.DM)
    assert sorted(dm.memberships.values_list("user__username", "role")) == [("alice", "member"), ("bob", "member")]

    # Alice: Bob's name on his message opens his card, whose "Message" lands in the same DM.
    author = message_items(alice_page).first.get_by_role("button", name="Bob")
    author.click()
    card = alice_page.get_by_role("dialog", name="Bob")
    expect(card).to_contain_text("@bob")
    card.get_by_role("button", name="Message Bob").click()
    alice_page.wait_for_url(dm_url)
    alice_page.locator("#conn-status[data-state=online]").wait_for()
    expect(alice_page.get_by_role("heading", level=1)).to_have_text("Bob")
    assert Room.objects.filter(kind=Room.Kind.DM).count() == 1

    # A conversation, live both ways.
    lines = [
        (bob_page, "Hi Alice, got a minute for my pull request?"),
        (alice_page, "Sure, send me the link."),
        (bob_page, "It adds direct messages: POST /api/dms/ and a Message button on people."),
        (alice_page, "Looks good, merging it now."),
    ]
    for n, (page, text) in enumerate(lines, start=1):
        composer = page.get_by_label("Message", exact=True)
        composer.fill(text)
        composer.press("Enter")
        for other in (alice_page, bob_page):
            expect(message_items(other)).to_have_count(n)
            expect(message_items(other).last.locator(".msg-body")).to_have_text(text)
    expect(alice_page.locator("#online-list")).to_contain_text("Bob")
    expect(alice_page.locator(".sidebar")).to_contain_text("Direct messages")

    screenshots = ROOT / "docs" / "screenshots"
    screenshots.mkdir(parents=True, exist_ok=True)
    alice_page.wait_for_timeout(300)  # let the read marker and presence settle before the picture
    alice_page.screenshot(path=str(screenshots / "dm.png"))

    # The room list shows the DM, named after the other person, under "Direct messages".
    bob_page.goto(f"{live_url}/")
    dms = bob_page.locator(".room-card-dm")
    expect(dms).to_have_count(1)
    expect(dms.locator(".room-card-title")).to_have_text("Alice")
    assert alice_page.errors == [] and bob_page.errors == []

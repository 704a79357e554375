"""The room list and a room page render unread and mention badges for badges.js to keep live."""

import re

import pytest

from messaging.services import message_create
from rooms.services import read_marker_set, room_join
from tests.factories import RoomFactory

pytestmark = pytest.mark.django_db


def badge_attrs(html: str, slug: str) -> dict[str, str]:
    match = re.search(rf'<span class="room-badges" data-badges="{slug}"([^>]*)>', html)
    assert match, f"no badges for {slug}"
    return dict(re.findall(r'data-([a-z-]+)="([^"]*)"', match.group(1)))


def test_room_list_renders_mention_and_unread_counts(login, alice, bob, lobby):
    random = RoomFactory(slug="random", name="Random", created_by=alice)
    for room in (lobby, random):
        room_join(room=room, user=bob)
    message_create(room=lobby, author=alice, body="@bob one")
    message_create(room=lobby, author=alice, body="plain")
    message_create(room=lobby, author=alice, body="@bob two")
    read_marker_set(room=lobby, user=bob, seq=1)

    html = login(bob).get("/").content.decode()
    assert badge_attrs(html, "lobby") == {"name": "Lobby", "last-seq": "3", "read-seq": "1", "mentions": "1"}
    assert '@1<span class="sr-only"> mention</span>' in html
    assert '2<span class="sr-only"> unread</span>' in html
    assert badge_attrs(html, "random") == {"name": "Random", "last-seq": "0", "read-seq": "0", "mentions": "0"}
    assert 'src="/static/chat/badges.js"' in html
    assert '"current": null' in html and f'"id": {bob.pk}' in html


def test_room_page_sidebar_badges_other_rooms_not_the_open_one(login, alice, bob, lobby):
    random = RoomFactory(slug="random", name="Random", created_by=alice)
    for room in (lobby, random):
        room_join(room=room, user=bob)
    message_create(room=lobby, author=alice, body="@bob here")
    message_create(room=random, author=alice, body="@bob there")

    html = login(bob).get("/rooms/lobby/").content.decode()
    assert badge_attrs(html, "lobby")["current"] == "1"
    assert badge_attrs(html, "random")["mentions"] == "1"
    # The open room's badges are rendered hidden; the other room's are shown.
    lobby_badges = html[html.index('data-badges="lobby"') : html.index('data-badges="random"')]
    assert lobby_badges.count(" hidden>") == 2
    assert '"current": "lobby"' in html
    assert html.index('src="/static/chat/badges.js"') < html.index('src="/static/chat/room.js"')

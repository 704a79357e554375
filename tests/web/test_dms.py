"""Direct messages in the server-rendered pages and in the admin."""

import pytest
from asgiref.sync import sync_to_async
from django.test import Client

from rooms.models import Membership, Room
from tests.factories import MembershipFactory
from tests.web.test_pages import boot_data

pytestmark = pytest.mark.django_db


def test_room_list_has_a_direct_messages_section(login, alice, bob, carol, lobby, bob_carol_dm):
    MembershipFactory(user=bob, room=lobby)
    html = login(bob).get("/").content.decode()
    assert '<h2 id="dms-heading">Direct messages</h2>' in html
    section = html[html.index('id="dms-heading"') : html.index("Other public rooms")]
    assert f'href="/rooms/{bob_carol_dm.slug}/"' in section and "Carol" in section
    assert "/rooms/lobby/" not in section
    # Not in anyone else's list, staff included.
    assert bob_carol_dm.slug not in login(alice).get("/").content.decode()


def test_message_someone_form_opens_the_dm_and_goes_there(login, bob, carol):
    client = login(bob)
    response = client.post("/dms/", {"usernames": "carol"})
    room = Room.objects.get(kind="dm")
    assert response.status_code == 302 and response["Location"] == f"/rooms/{room.slug}/"
    # The same people again: the same room.
    assert login(carol).post("/dms/", {"usernames": " bob, "})["Location"] == f"/rooms/{room.slug}/"
    assert Room.objects.filter(kind="dm").count() == 1


@pytest.mark.parametrize("usernames", ["", "bob", "ghost", "carol ghost"])
def test_message_someone_form_errors_are_shown_on_the_room_list(login, bob, carol, usernames):
    client = login(bob)
    response = client.post("/dms/", {"usernames": usernames})
    assert response.status_code == 302 and response["Location"] == "/"
    assert 'class="flash-error"' in client.get("/").content.decode()
    assert not Room.objects.filter(kind="dm").exists()


def test_dm_page_is_named_after_the_others(login, bob, carol, lobby, bob_carol_dm):
    MembershipFactory(user=bob, room=lobby)
    response = login(bob).get(f"/rooms/{bob_carol_dm.slug}/")
    assert response.status_code == 200
    html = response.content.decode()
    data = boot_data(response)
    assert data["room"] == {
        "slug": bob_carol_dm.slug,
        "kind": "dm",
        "name": "Carol",
        "is_private": True,
        "is_locked": False,
        "last_seq": 0,
    }
    assert data["can_moderate"] is False
    assert "<title>Carol · Chat</title>" in html and 'placeholder="Message Carol"' in html
    # The sidebar lists rooms, then DMs under their own heading.
    start = html.index('<nav class="sidebar"')
    sidebar = html[start : html.index("</nav>", start)]
    assert sidebar.index("/rooms/lobby/") < sidebar.index("Direct messages") < sidebar.index(bob_carol_dm.slug)
    assert boot_data(login(carol).get(f"/rooms/{bob_carol_dm.slug}/"))["room"]["name"] == "Bob"


def test_dm_page_is_404_for_everyone_else(login, alice, dave, bob_carol_dm):
    assert login(dave).get(f"/rooms/{bob_carol_dm.slug}/").status_code == 404
    assert login(alice).get(f"/rooms/{bob_carol_dm.slug}/").status_code == 404
    assert login(dave).post(f"/rooms/{bob_carol_dm.slug}/join/").status_code == 404


# --- admin --------------------------------------------------------------------------------


def _admin(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_admin_lists_and_filters_rooms_by_kind(alice, lobby, bob_carol_dm):
    client = _admin(alice)
    everything = client.get("/admin/rooms/room/").content.decode()
    assert bob_carol_dm.slug in everything and "Direct message" in everything
    dms = client.get("/admin/rooms/room/?kind__exact=dm").content.decode()
    assert bob_carol_dm.slug in dms and f"/admin/rooms/room/{lobby.pk}/change/" not in dms
    rooms = client.get("/admin/rooms/room/?kind__exact=room").content.decode()
    assert bob_carol_dm.slug not in rooms
    assert client.get(f"/admin/rooms/room/{bob_carol_dm.pk}/change/").status_code == 200


def test_admin_cannot_turn_a_dm_into_an_owned_room(alice, bob, carol, dave, bob_carol_dm):
    """Its change form keeps name, privacy, lock and members as they are, and adds no owner."""
    client = _admin(alice)
    page = client.get(f"/admin/rooms/room/{bob_carol_dm.pk}/change/").content.decode()
    assert 'name="is_locked"' not in page and 'name="name"' not in page
    # Members are shown, not editable, and neither inline offers to add a row.
    assert 'name="memberships-0-role"' not in page and "Bob" in page
    assert "memberships-__prefix__" not in page and "bans-__prefix__" not in page
    # A hand-made POST that tries anyway: rename, lock, make bob owner, add dave as owner, ban carol.
    existing = list(Membership.objects.filter(room=bob_carol_dm).order_by("pk"))
    form = {
        "name": "Hijacked",
        "is_locked": "on",
        "is_private": "",
        "created_by": str(dave.pk),
        "memberships-TOTAL_FORMS": "3",
        "memberships-INITIAL_FORMS": "2",
        "memberships-2-user": str(dave.pk),
        "memberships-2-role": "owner",
        "bans-TOTAL_FORMS": "1",
        "bans-INITIAL_FORMS": "0",
        "bans-0-user": str(carol.pk),
    }
    for i, membership in enumerate(existing):
        form |= {
            f"memberships-{i}-id": str(membership.pk),
            f"memberships-{i}-room": str(bob_carol_dm.pk),
            f"memberships-{i}-user": str(membership.user_id),
            f"memberships-{i}-role": "owner",
        }
    response = client.post(f"/admin/rooms/room/{bob_carol_dm.pk}/change/", form)
    assert response.status_code == 302
    assert not bob_carol_dm.bans.exists()
    bob_carol_dm.refresh_from_db()
    assert (bob_carol_dm.name, bob_carol_dm.is_locked, bob_carol_dm.is_private) == ("Bob, Carol", False, True)
    assert bob_carol_dm.created_by == bob
    assert sorted(Membership.objects.filter(room=bob_carol_dm).values_list("user__username", "role")) == [
        ("bob", "member"),
        ("carol", "member"),
    ]


@pytest.mark.django_db(transaction=True)
async def test_admin_lock_action_skips_dms(ws, alice, bob, carol, lobby, bob_carol_dm):
    client = await sync_to_async(_admin)(alice)
    async with ws(bob) as b:
        await b.join(bob_carol_dm.slug)
        response = await sync_to_async(client.post)(
            "/admin/rooms/room/",
            {"action": "lock_rooms", "_selected_action": [str(lobby.pk), str(bob_carol_dm.pk)]},
            follow=True,
        )
        page = response.content.decode()
        assert "Locked 1 room(s)." in page and "Skipped 1 direct message(s)" in page
        await b.nothing()  # no room_updated for the DM
    assert await Room.objects.filter(is_locked=True).acount() == 1
    assert not (await Room.objects.aget(pk=bob_carol_dm.pk)).is_locked
    from django.db import connections

    await sync_to_async(connections.close_all)()

"""/u/<username>/: where a mention in a message links."""

import pytest

from rooms.models import Room
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_a_person_page_offers_a_direct_message(login, alice, bob):
    page = login(alice).get("/u/bob/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "<h1>Bob</h1>" in html and "@bob" in html
    assert 'action="/dms/"' in html and 'name="usernames" value="bob"' in html
    # The form does what it says: the DM of the two opens.
    r = login(alice).post("/dms/", {"usernames": "bob"})
    dm = Room.objects.get(kind=Room.Kind.DM)
    assert r.status_code == 302 and r["Location"] == f"/rooms/{dm.slug}/"


def test_your_own_page_has_no_message_button(login, alice):
    html = login(alice).get("/u/alice/").content.decode()
    assert "This is you." in html and 'name="usernames"' not in html


def test_unknown_or_deactivated_people_are_404(login, alice):
    UserFactory(username="gone", is_active=False)
    assert login(alice).get("/u/nobody/").status_code == 404
    assert login(alice).get("/u/gone/").status_code == 404


def test_anonymous_visitors_are_sent_to_log_in(client, bob):
    r = client.get("/u/bob/")
    assert r.status_code == 302 and r["Location"].startswith("/accounts/login/")

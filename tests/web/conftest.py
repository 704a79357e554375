import pytest
from django.test import Client

from tests.factories import PASSWORD
from tests.messaging.conftest import ws  # noqa: F401 - the websocket fixture, shared


@pytest.fixture
def login():
    """A Django test client logged in as the given user (through the real login form)."""

    def make(user) -> Client:
        client = Client()
        response = client.post("/accounts/login/", {"username": user.username, "password": PASSWORD})
        assert response.status_code == 302, response.content[:500]
        return client

    return make

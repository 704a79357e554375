"""API test helpers. `ws` is the websocket fixture of tests/messaging, re-exported here."""

import pytest
from rest_framework.test import APIClient

from tests.factories import token_for
from tests.messaging.conftest import ws  # noqa: F401 - a fixture, used by name


class Api:
    """An APIClient that authenticates with a real token and speaks JSON."""

    def __init__(self, user=None, **client_kwargs) -> None:
        self.client = APIClient(**client_kwargs)
        if user is not None:
            self.client.credentials(HTTP_AUTHORIZATION=f"Token {token_for(user)}")

    def get(self, url, params=None, **extra):
        return self.client.get(url, params, **extra)

    def post(self, url, data=None, **extra):
        return self.client.post(url, data, format="json", **extra)

    def patch(self, url, data=None, **extra):
        return self.client.patch(url, data, format="json", **extra)

    def delete(self, url, **extra):
        return self.client.delete(url, **extra)


@pytest.fixture
def api():
    """`api(user)` is a client authenticated as `user` by token; `api()` is anonymous."""
    return Api


def assert_error(response, status: int, code: str) -> dict:
    """The contract's error shape: exactly `detail` and `code`."""
    assert response.status_code == status, (response.status_code, response.content)
    body = response.json()
    assert set(body) == {"detail", "code"}, body
    assert body["code"] == code, body
    assert isinstance(body["detail"], str) and body["detail"]
    return body

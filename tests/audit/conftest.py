"""The websocket fixture and the API client, shared with tests/messaging and tests/api."""

from tests.api.conftest import api  # noqa: F401 - fixtures, used by name
from tests.messaging.conftest import ws  # noqa: F401

"""Fixtures for tests that run real server processes, daphne or uvicorn (see servers.py).

They need PostgreSQL (DATABASE_URL) and, for several processes, Redis
(REDIS_URL); the markers `postgres`, `redis` and `multiprocess` skip them
otherwise (tests/conftest.py), and REQUIRE_SERVICES=1 turns that into a failure.
"""

import os

import pytest
from django.conf import settings

from .servers import Backends, ChatServer


def _database_url() -> str:
    db = settings.DATABASES["default"]
    return f"postgres://{db.get('USER') or 'root'}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/postgres"


@pytest.fixture(scope="module")
def backends():
    """A dedicated, migrated PostgreSQL database (and Redis DB number) for this module's servers."""
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip("server processes need PostgreSQL")
    chosen = Backends(_database_url(), settings.REDIS_URL or None).setup()
    yield chosen
    chosen.teardown()


@pytest.fixture
def servers(request):
    """Start servers: `servers(env, kind=...)`; all are stopped (and their logs shown on failure) after the test.

    `kind` defaults to CHAT_TEST_SERVER (see servers.py).
    """
    started: list[ChatServer] = []

    def start(env: dict[str, str], **kwargs) -> ChatServer:
        server = ChatServer(env, **kwargs).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
    report = getattr(request.node, "rep_call", None)
    if (report is not None and report.failed) or os.environ.get("SHOW_SERVER_LOGS"):
        for server in started:
            print(f"--- {server.kind} :{server.port} ---\n{server.output()[-4000:]}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.rep_call = report
    return report


@pytest.fixture(autouse=True)
def _server_frames_match_the_schema(monkeypatch):
    """Every text frame a websockets client reads from a real server must match the frame schema.

    Covers raw `connect()` sockets and the reference ChatClient alike (its loop
    iterates with `recv`). A violation inside ChatClient's background task would
    only kill that task, so violations are collected and fail the test at its end.
    """
    from websockets.asyncio.client import ClientConnection

    from tests.wsschema import FrameSchemaError, check_server_frame

    violations: list[str] = []
    original = ClientConnection.recv

    async def recv(self, *args, **kwargs):
        data = await original(self, *args, **kwargs)
        if isinstance(data, str):
            try:
                check_server_frame(data)
            except FrameSchemaError as exc:
                violations.append(str(exc))
                raise
        return data

    monkeypatch.setattr(ClientConnection, "recv", recv)
    yield
    assert not violations, "server frames that do not match /api/ws-schema/:\n" + "\n".join(violations)

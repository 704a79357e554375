"""The 64 KiB message limit under each real server: closed with 1009, never 1011.

daphne (autobahn) and uvicorn (its websockets and wsproto implementations)
enforce the limit in the protocol layer, before the message is buffered in
full; each must send the contract's 1009.
"""

import json
import os
import subprocess

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from .servers import BASE_DIR, PYTHON, ChatServer

pytestmark = [pytest.mark.timeout(90)]

# (server, extra uvicorn options): wsproto is the implementation uvicorn
# falls back to without the websockets library, so it must keep the limit too.
SERVERS = {
    "daphne": ("daphne", []),
    "uvicorn": ("uvicorn", []),
    "uvicorn-wsproto": ("uvicorn", ["--ws", "wsproto"]),
}


@pytest.fixture(scope="module")
def sqlite_env(tmp_path_factory):
    """A migrated SQLite database with one user and room, shared by every server of this module."""
    path = tmp_path_factory.mktemp("limits") / "limits.sqlite3"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL"))}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.local",
        DJANGO_DEBUG="0",
        DATABASE_URL=f"sqlite:///{path}",
        LOG_LEVEL="WARNING",
    )
    script = (
        "from accounts.models import User\n"
        "from rest_framework.authtoken.models import Token\n"
        "from rooms.services import room_create\n"
        "u = User.objects.create_user('limit', password='x')\n"
        "room_create(creator=u, slug='lobby', name='Lobby')\n"
        "print(Token.objects.create(user=u).key)\n"
    )
    for args in (["migrate", "-v0"], ["shell", "-c", script]):
        out = subprocess.run(
            [PYTHON, "manage.py", *args], cwd=BASE_DIR, env=env, capture_output=True, text=True, check=True
        )
    return env, out.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module", params=list(SERVERS))
def sqlite_server(request, sqlite_env):
    kind, extra = SERVERS[request.param]
    env, token = sqlite_env
    server = ChatServer(env, kind=kind)
    if extra:
        base = server.command
        server.command = lambda: [*base(), *extra]  # type: ignore[method-assign]
    server.start()
    yield server, token
    server.stop()


async def test_a_message_over_64_kib_closes_with_1009_and_one_at_the_limit_is_fine(sqlite_server):
    server, token = sqlite_server
    headers = {"Authorization": f"Token {token}"}
    async with connect(server.ws_url, additional_headers=headers, max_size=None) as ws:
        await ws.send(json.dumps({"type": "join", "room": "lobby"}))
        assert json.loads(await ws.recv())["type"] == "joined"
        at_limit = json.dumps({"type": "ping", "ref": "x", "pad": "p" * (64 * 1024 - 40)})
        at_limit = at_limit[: 64 * 1024 - 2] + '"}' if len(at_limit) > 64 * 1024 else at_limit
        assert len(at_limit.encode()) <= 64 * 1024
        await ws.send(at_limit)
        assert json.loads(await ws.recv()) == {"type": "pong", "ref": "x"}
        await ws.send(json.dumps({"type": "send", "room": "lobby", "body": "x" * 70000, "client_id": "big"}))
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


async def test_a_huge_message_is_refused_without_being_buffered(sqlite_server):
    """16 MiB (uvicorn's own default limit) is closed with 1009 as promptly as 70 KB."""
    server, token = sqlite_server
    async with connect(server.ws_url, additional_headers={"Authorization": f"Token {token}"}, max_size=None) as ws:
        await ws.send(json.dumps({"type": "ping", "ref": "p"}))
        assert json.loads(await ws.recv())["type"] == "pong"
        with pytest.raises(ConnectionClosed) as closed:
            await ws.send("x" * (16 * 1024 * 1024 + 1))
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009

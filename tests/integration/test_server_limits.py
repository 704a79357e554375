"""The 64 KiB message limit under the real server: daphne closes with 1009, never 1011."""

import json
import os
import subprocess

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from .servers import BASE_DIR, PYTHON, Daphne

pytestmark = [pytest.mark.timeout(90)]


@pytest.fixture
def sqlite_server(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL"))}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.local",
        DJANGO_DEBUG="0",
        DATABASE_URL=f"sqlite:///{tmp_path / 'limits.sqlite3'}",
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
    token = out.stdout.strip().splitlines()[-1]
    server = Daphne(env).start()
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

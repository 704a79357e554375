"""Real server processes and a cuttable TCP proxy for the integration tests.

Nothing here touches the machine's PostgreSQL or Redis servers beyond one
dedicated database (`chat_mp_<random>`, dropped afterwards) and one otherwise
empty Redis DB number (flushed afterwards). Outages are simulated by cutting
a `TcpProxy` that the server under test talks through.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Self

BASE_DIR = Path(__file__).resolve().parent.parent.parent
PYTHON = sys.executable
DAPHNE = str(Path(PYTHON).parent / "daphne")

# Both ASGI servers keep the websocket contract; the tests run on the one
# CHAT_TEST_SERVER names (default: the one `make run` uses), and CI runs the
# integration tests once more on the other.
SERVER_KINDS = ("uvicorn", "daphne")


def server_kind_under_test() -> str:
    kind = os.environ.get("CHAT_TEST_SERVER") or SERVER_KINDS[0]
    if kind not in SERVER_KINDS:
        raise RuntimeError(f"CHAT_TEST_SERVER must be one of {SERVER_KINDS}, not {kind!r}")
    return kind


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 5) -> tuple[int, Any]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


# --- a TCP proxy that can be cut and restored ---------------------------------


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target; `cut()` drops every connection and refuses new ones.

    It runs its own event loop in a thread, so it keeps forwarding whatever the
    test's loop is doing.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: asyncio.AbstractServer | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.frozen = False

    def start(self) -> TcpProxy:
        self.thread.start()
        self._call(self._listen())
        return self

    def cut(self) -> None:
        """Close the listening socket and every forwarded connection (like a server restart)."""
        self._call(self._cut())

    def restore(self) -> None:
        self._call(self._listen())

    def freeze(self) -> None:
        """Keep connections open but forward nothing (a half-open peer)."""
        self.frozen = True

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._call(self._cut())
            self._call(self._cancel_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        if not self.thread.is_alive():
            self.loop.close()

    async def _cancel_all(self) -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    async def _listen(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)

    async def _cut(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for writer in list(self.writers):
            writer.transport.abort()
        self.writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.writers.update({writer, up_writer})

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    while self.frozen:
                        await asyncio.sleep(3600)
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.transport.abort()
                self.writers.discard(dst)

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


# --- a dedicated PostgreSQL database and Redis DB number ---------------------------


class Backends:
    """A fresh migrated database `chat_mp_<hex>` and a free Redis DB number for server processes."""

    def __init__(self, database_url: str, redis_url: str | None) -> None:
        parts = urllib.parse.urlsplit(database_url)
        self.pg_host = parts.hostname or "127.0.0.1"
        self.pg_port = parts.port or 5432
        self.pg_user = parts.username or "root"
        self.name = f"chat_mp_{uuid.uuid4().hex[:10]}"
        self.admin_url = f"postgres://{self.pg_user}@{self.pg_host}:{self.pg_port}/postgres"
        self.redis_base = redis_url
        self.redis_db: int | None = None
        self.redis_prefix = "chatmp"

    def database_url(self, port: int | None = None) -> str:
        """DATABASE_URL for the servers; `port` routes it through a proxy."""
        return f"postgres://{self.pg_user}@127.0.0.1:{port or self.pg_port}/{self.name}"

    def redis_url(self, port: int | None = None) -> str:
        assert self.redis_base is not None and self.redis_db is not None
        parts = urllib.parse.urlsplit(self.redis_base)
        return f"redis://{parts.hostname}:{port or parts.port or 6379}/{self.redis_db}"

    def setup(self) -> Backends:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        self.manage("migrate", "--noinput")
        if self.redis_base:
            self._claim_redis_db()
        return self

    def teardown(self) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        if self.redis_db is not None:
            self._redis().flushdb()

    def _redis(self) -> Any:
        import redis

        parts = urllib.parse.urlsplit(self.redis_base or "")
        return redis.Redis(host=parts.hostname or "127.0.0.1", port=parts.port or 6379, db=self.redis_db or 0)

    def _claim_redis_db(self) -> None:
        """Take an empty DB number other than the test run's own (which the test fixtures flush)."""
        own = int(urllib.parse.urlsplit(self.redis_base or "").path.strip("/") or 0)
        for number in range(15, 0, -1):
            if number == own:
                continue
            self.redis_db = number
            client = self._redis()
            if client.dbsize() == 0 and client.set("chat-test:claimed-by", self.name, nx=True, ex=3600):
                if client.dbsize() == 1:
                    return
                client.delete("chat-test:claimed-by")
        self.redis_db = None
        raise RuntimeError("no empty Redis DB number to run the servers on")

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL"))}
        env.update(
            DJANGO_SETTINGS_MODULE="config.settings.local",
            DJANGO_DEBUG="0",
            DATABASE_URL=self.database_url(),
            CHAT_RATE_LIMIT="off",
            CHAT_SWEEP_INTERVAL="1.0",
            CHAT_GAP_WAIT="0.1",
            LOG_LEVEL="WARNING",
            PYTHONUNBUFFERED="1",
            CHAT_REDIS_PREFIX=self.redis_prefix,
        )
        if self.redis_db is not None:
            env["REDIS_URL"] = self.redis_url()
        env.update(extra)
        return env

    def manage(self, *args: str, **env: str) -> str:
        result = subprocess.run(
            [PYTHON, "manage.py", *args],
            cwd=BASE_DIR,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def seed(self, users: list[str], rooms: list[str]) -> dict[str, str]:
        """Create users (with tokens) and public rooms; returns {username: token}."""
        script = (
            "import json\n"
            "from accounts.models import User\n"
            "from rooms.models import Room\n"
            "from rest_framework.authtoken.models import Token\n"
            f"users, rooms = {users!r}, {rooms!r}\n"
            "tokens = {}\n"
            "for name in users:\n"
            "    user, _ = User.objects.get_or_create(username=name, defaults={'display_name': name.title()})\n"
            "    tokens[name] = Token.objects.get_or_create(user=user)[0].key\n"
            "owner = User.objects.get(username=users[0])\n"
            "for slug in rooms:\n"
            "    Room.objects.get_or_create(slug=slug, defaults={'name': slug.title(), 'created_by': owner})\n"
            "print(json.dumps(tokens))\n"
        )
        out = self.manage("shell", "-c", script)
        return json.loads(out.strip().splitlines()[-1])

    def shell(self, script: str) -> str:
        return self.manage("shell", "-c", script)

    def bulk_messages(self, slug: str, username: str, count: int) -> None:
        """Append `count` messages to a room straight into the table (seq continues the room's)."""
        self.shell(
            "from django.db import transaction\n"
            "from accounts.models import User\n"
            "from messaging.models import Message\n"
            "from rooms.models import Room\n"
            "with transaction.atomic():\n"
            f"    room = Room.objects.select_for_update().get(slug={slug!r})\n"
            f"    author = User.objects.get(username={username!r})\n"
            "    Message.objects.bulk_create(Message(room=room, author=author, seq=room.last_seq + i,"
            f" body=f'bulk {{i}}') for i in range(1, {count} + 1))\n"
            f"    Room.objects.filter(pk=room.pk).update(last_seq=room.last_seq + {count})\n"
        )

    def history(self, slug: str) -> list[tuple[int, int, str | None, str]]:
        """(seq, id, client_id, author username) of every stored message in the room, by seq."""
        import psycopg

        with psycopg.connect(self.database_url().replace("postgres://", "postgresql://")) as conn:
            rows = conn.execute(
                "SELECT m.seq, m.id, m.client_id, u.username FROM messaging_message m "
                "JOIN rooms_room r ON r.id = m.room_id JOIN accounts_user u ON u.id = m.author_id "
                "WHERE r.slug = %s ORDER BY m.seq",
                (slug,),
            ).fetchall()
        return [tuple(row) for row in rows]


# --- the server under test: daphne or uvicorn -----------------------------------------------


class ChatServer:
    """One `config.asgi:application` process on a free port, served by daphne or uvicorn.

    uvicorn starts through `python -m config.serve`, with the settings `make run`
    and production use; only the ping timing is shortened for the tests.
    """

    def __init__(
        self, env: dict[str, str], *, kind: str | None = None, ping_interval: float = 5, ping_timeout: float = 10
    ) -> None:
        self.kind = kind or server_kind_under_test()
        self.port = free_port()
        self.env = env
        self.ping = (ping_interval, ping_timeout)
        self.log = tempfile.NamedTemporaryFile(prefix=f"{self.kind}-{self.port}-", suffix=".log", delete=False)  # noqa: SIM115
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/chat/"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        if self.kind == "uvicorn":
            cmd = [PYTHON, "-m", "config.serve", "--host", "127.0.0.1", "--port", str(self.port)]
            cmd += ["--ws-ping-interval", str(self.ping[0]), "--ws-ping-timeout", str(self.ping[1])]
            return cmd
        cmd = [DAPHNE, "-b", "127.0.0.1", "-p", str(self.port)]
        cmd += ["--ping-interval", str(self.ping[0]), "--ping-timeout", str(self.ping[1])]
        return [*cmd, "config.asgi:application"]

    def start(self, wait: float = 30) -> Self:
        self.process = subprocess.Popen(
            self.command(),
            cwd=BASE_DIR,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.kind} exited early:\n{self.output()}")
            with contextlib.suppress(OSError):
                if http_get(f"{self.http_url}/healthz", timeout=1)[0] == 200:
                    return self
            time.sleep(0.2)
        raise RuntimeError(f"{self.kind} did not come up:\n{self.output()}")

    def kill(self) -> None:
        """SIGKILL: no clean close for any socket, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")


class Daphne(ChatServer):
    """A daphne process whatever CHAT_TEST_SERVER says (chatclient/soak.py and older tests use this name)."""

    def __init__(self, env: dict[str, str], **kwargs: Any) -> None:
        super().__init__(env, kind="daphne", **kwargs)

"""daphne and uvicorn serve the same application the same way (config/serve.py, config/websocket_limits.py).

The real servers are exercised in tests/integration/ (test_server_limits.py,
the ping test in test_faults.py, and the whole directory under CHAT_TEST_SERVER).
"""

import asyncio
from types import SimpleNamespace

import pytest
from django.conf import settings
from uvicorn.protocols.utils import ClientDisconnected

from config import serve
from config.websocket_limits import WebsocketSends, abort_unanswered_uvicorn_pings, limit_daphne_messages


def test_uvicorn_enforces_the_contract_limit_without_compression():
    options = serve.OPTIONS
    assert options[options.index("--ws-max-size") + 1] == str(settings.CHAT_MAX_FRAME_BYTES)
    assert options[options.index("--ws-per-message-deflate") + 1] == "false"
    assert options[options.index("--loop") + 1] == "uvloop"
    assert options[options.index("--http") + 1] == "httptools"


def test_several_workers_need_redis(monkeypatch, capsys):
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("UVICORN_WORKERS", raising=False)
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    assert serve.workers_requested([]) == 3
    assert serve.workers_requested(["--workers", "1"]) == 1
    with pytest.raises(SystemExit, match="REDIS_URL"):
        serve.main(["--workers=2"])
    serve.main(["--print-options"])
    printed = capsys.readouterr().out
    assert printed.startswith("--loop uvloop") and printed.strip().endswith("config.asgi:application")


class FakeUvicornSocket:
    """What WebsocketSends sees of uvicorn's websocket protocol: `send`, `writable`, `transport`."""

    def __init__(self) -> None:
        self.writable = asyncio.Event()
        self.writable.set()
        self.transport = SimpleNamespace(aborted=False)
        self.transport.abort = lambda: setattr(self.transport, "aborted", True)
        self.written: list[str] = []
        self.closed = False

    async def send(self, message):
        await self.writable.wait()  # as uvicorn does while its transport buffer is full
        if self.closed:
            raise ClientDisconnected()
        self.written.append(message.get("text") or message["type"])


async def run_app(socket: FakeUvicornSocket, body, max_backlog_bytes: int = 1000):
    async def app(scope, receive, send):
        await body(send)

    await WebsocketSends(app, max_backlog_bytes)({"type": "websocket"}, None, socket.send)


async def test_a_send_to_a_closed_socket_is_dropped_as_daphne_does():
    socket = FakeUvicornSocket()
    socket.closed = True
    went_on = []

    async def body(send):
        await send({"type": "websocket.send", "text": "x"})  # raises on uvicorn: dropped
        await send({"type": "websocket.close", "code": 1000})
        went_on.append(True)  # e.g. a room's fan-out reaches the next socket

    await run_app(socket, body)
    assert went_on == [True] and socket.written == []


async def test_other_send_failures_still_raise():
    async def failing_send(message):
        raise ConnectionResetError()

    async def app(scope, receive, send):
        await send({"type": "websocket.accept"})

    with pytest.raises(ConnectionResetError):
        await WebsocketSends(app)({"type": "websocket"}, None, failing_send)


async def test_a_client_that_does_not_read_never_holds_up_the_sender():
    socket = FakeUvicornSocket()
    socket.writable.clear()  # its transport buffer is full

    async def body(send):
        for text in ("1", "2", "3"):
            await asyncio.wait_for(send({"type": "websocket.send", "text": text}), 0.1)  # returns at once
        await send({"type": "websocket.close", "code": 1000})

    await run_app(socket, body)
    assert socket.written == []
    socket.writable.set()  # the client read again
    for _ in range(10):
        await asyncio.sleep(0)
    assert socket.written == ["1", "2", "3", "websocket.close"]  # in order, after the backlog
    assert not socket.transport.aborted


async def test_a_client_too_far_behind_is_cut():
    socket = FakeUvicornSocket()
    socket.writable.clear()

    async def body(send):
        for _ in range(3):
            await send({"type": "websocket.send", "text": "x" * 400})

    await run_app(socket, body, max_backlog_bytes=1000)
    assert socket.transport.aborted  # the server then reports websocket.disconnect; the client catches up with `after`


def test_unanswered_uvicorn_pings_abort_the_connection():
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

    abort_unanswered_uvicorn_pings()
    abort_unanswered_uvicorn_pings()  # idempotent
    assert WebSocketsSansIOProtocol.keepalive_timeout.chat_abort is True


def test_daphne_sends_server_frames_over_the_client_limit():
    """The limit is on what clients send: a `joined` listing ~700 online users is larger, and must go out."""
    from autobahn.websocket.protocol import WebSocketProtocol
    from daphne.ws_protocol import WebSocketFactory
    from twisted.internet.testing import StringTransport

    limit_daphne_messages(settings.CHAT_MAX_FRAME_BYTES)
    factory = WebSocketFactory(server_class=None)
    factory.setProtocolOptions(maxMessagePayloadSize=2**20)  # daphne's own default, capped by the patch
    protocol = factory.buildProtocol(("127.0.0.1", 1))
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.state, protocol.websocket_version, protocol.client_addr = WebSocketProtocol.STATE_OPEN, 13, None
    protocol.serverSend("x" * 100_000)
    assert len(transport.value()) > 100_000
    assert protocol.maxMessagePayloadSize == settings.CHAT_MAX_FRAME_BYTES  # received messages stay limited

"""daphne and uvicorn serve the same application the same way (config/serve.py, config/websocket_limits.py).

The real servers are exercised in tests/integration/ (test_server_limits.py,
the ping test in test_faults.py, and the whole directory under CHAT_TEST_SERVER).
"""

import pytest
from django.conf import settings
from uvicorn.protocols.utils import ClientDisconnected

from config import serve
from config.websocket_limits import SendsToClosedSocketsIgnored, limit_daphne_messages


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


async def test_a_send_to_a_closed_socket_is_dropped_as_daphne_does():
    sent: list[str] = []

    async def uvicorn_send(message):
        if message.get("text") == "closed":
            raise ClientDisconnected()
        sent.append(message["type"])

    async def app(scope, receive, send):
        await send({"type": "websocket.send", "text": "closed"})  # raises on uvicorn: dropped
        await send({"type": "websocket.close", "code": 1000})  # the loop goes on
        sent.append("went on")

    await SendsToClosedSocketsIgnored(app)({"type": "websocket"}, None, uvicorn_send)
    assert sent == ["websocket.close", "went on"]


async def test_other_send_failures_still_raise():
    async def failing_send(message):
        raise ConnectionResetError()

    async def app(scope, receive, send):
        await send({"type": "websocket.accept"})

    with pytest.raises(ConnectionResetError):
        await SendsToClosedSocketsIgnored(app)({"type": "websocket"}, None, failing_send)


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

"""Make daphne and uvicorn behave alike for the websocket consumers.

Sends to a socket the client has closed are dropped on both
(`SendsToClosedSocketsIgnored`).

The contract's 64 KiB limit on client messages is enforced inside daphne
itself (`limit_daphne_messages`). Daphne's websocket library (autobahn) only
lets an application close with 1000 or 3000-4999, so a consumer cannot send
the contract's 1009 ("message too big") itself: its close raises and daphne
falls back to 1011. Autobahn does close with 1009 when a message exceeds
`maxMessagePayloadSize`, and it refuses to buffer more than that, which also
keeps a flood of huge frames from costing memory. Daphne sets that option
from its CLI (1 MiB by default); the documented start command is plain
`daphne config.asgi:application`, so the limit is applied where daphne
configures its factory.

Autobahn applies the same `maxMessagePayloadSize` to what the server sends,
so a server frame over 64 KiB (a `joined` listing some 700 online users)
would fail to go out; the contract's limit is on client messages only, so
the check is lifted around daphne's sends.

uvicorn needs none of this: its `--ws-max-size` (config/serve.py) limits
received messages only, and closes with 1009 too.
"""

from typing import Any

from asgiref.typing import ASGIReceiveCallable, ASGISendCallable, ASGISendEvent, Scope


class SendsToClosedSocketsIgnored:
    """ASGI middleware: a send to a socket the client has already closed is dropped, as daphne does.

    uvicorn raises `ClientDisconnected` (an OSError, as the ASGI spec allows)
    instead. The consumers learn of the close from `websocket.disconnect`
    either way, and a raise would abort whatever loop was writing, e.g. one
    broadcast to every socket of a room, for the sockets after the closed one.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> Any:
        async def send_unless_closed(message: ASGISendEvent) -> None:
            try:
                await send(message)
            except OSError:
                if message["type"] not in ("websocket.send", "websocket.close"):
                    raise

        return await self.app(scope, receive, send_unless_closed)


def limit_daphne_messages(max_bytes: int) -> None:
    """Cap daphne's websocket message and frame size at `max_bytes` (idempotent)."""
    try:
        from daphne.ws_protocol import WebSocketFactory, WebSocketProtocol
    except ImportError:  # served by another ASGI server: the consumer's own check applies
        return
    _unlimit_daphne_sends(WebSocketProtocol)
    original = WebSocketFactory.setProtocolOptions
    if getattr(original, "chat_limit", None) == max_bytes:
        return

    def set_protocol_options(self: Any, *args: Any, **kwargs: Any) -> Any:
        for key in ("maxMessagePayloadSize", "maxFramePayloadSize"):
            given = kwargs.get(key) or 0  # 0 means unlimited to autobahn
            kwargs[key] = min(given, max_bytes) if given else max_bytes
        # Send the close frame (1009) instead of dropping the TCP connection,
        # so clients learn why and do not retry the same frame.
        kwargs.setdefault("failByDrop", False)
        return original(self, *args, **kwargs)

    set_protocol_options.chat_limit = max_bytes  # type: ignore[attr-defined]
    WebSocketFactory.setProtocolOptions = set_protocol_options


def _unlimit_daphne_sends(protocol: Any) -> None:
    """Let daphne send application frames of any size (idempotent)."""
    original = protocol.serverSend
    if getattr(original, "chat_unlimited", False):
        return

    def server_send(self: Any, content: Any, binary: bool = False) -> Any:
        # One reactor thread: nothing else reads the attribute in between.
        limit = self.maxMessagePayloadSize
        self.maxMessagePayloadSize = 0
        try:
            return original(self, content, binary)
        finally:
            self.maxMessagePayloadSize = limit

    server_send.chat_unlimited = True  # type: ignore[attr-defined]
    protocol.serverSend = server_send

"""Make daphne and uvicorn behave alike for the websocket consumers.

Websocket sends neither wait for a slow client nor fail for a closed one,
on either server (`WebsocketSends`), and uvicorn aborts a peer that stopped
answering its pings (`abort_unanswered_uvicorn_pings`).

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

import asyncio
from collections import deque
from typing import Any

from asgiref.typing import ASGIReceiveCallable, ASGISendCallable, ASGISendEvent, Scope

# What one socket may have queued behind a client that does not read (beyond
# the transport's own 64 KiB) before it is cut: a join replay of 500 long
# messages fits several times over.
MAX_BACKLOG_BYTES = 4 * 1024 * 1024


class WebsocketSends:
    """ASGI middleware: websocket sends never wait for the client and never fail, on either server.

    daphne queues every frame and returns at once, and drops a frame for a
    socket that is already closed; the consumers are written for that (the
    room fan-out writes one frame to each socket in turn). uvicorn instead
    makes `send` wait while the socket's transport buffer is full, so one
    client that stops reading would hold up its whole room on the process,
    and raises `ClientDisconnected` (an OSError, as ASGI allows) for a closed
    socket, which stopped a fan-out loop at that socket.

    Here a frame for a socket whose transport is not writable goes into a
    per-socket backlog that one task writes in order; past MAX_BACKLOG_BYTES
    the connection is aborted (the client reconnects and catches up with
    `after`), as daphne's ping timeout would eventually do. A send to a
    closed socket is dropped: the consumer learns of the close from
    `websocket.disconnect` either way.
    """

    def __init__(self, app: Any, max_backlog_bytes: int = MAX_BACKLOG_BYTES) -> None:
        self.app = app
        self.max_backlog_bytes = max_backlog_bytes

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> Any:
        return await self.app(scope, receive, _Sender(send, self.max_backlog_bytes).send)


class _Sender:
    def __init__(self, send: ASGISendCallable, max_backlog_bytes: int) -> None:
        self.send_now = send
        # uvicorn's protocol: `writable` is cleared while the transport's buffer
        # is over its high-water mark. daphne's send has neither: never queued.
        protocol = getattr(send, "__self__", None)
        writable = getattr(protocol, "writable", None)
        self.writable: asyncio.Event | None = writable if isinstance(writable, asyncio.Event) else None
        self.transport: asyncio.Transport | None = getattr(protocol, "transport", None)
        self.max_backlog_bytes = max_backlog_bytes
        self.backlog: deque[tuple[ASGISendEvent, int]] = deque()
        self.backlog_bytes = 0
        self.writer: asyncio.Task[None] | None = None

    async def send(self, message: ASGISendEvent) -> None:
        # While a backlog is being written, everything queues behind it, so
        # frames keep their order.
        if self.writer is not None or (self.writable is not None and not self.writable.is_set()):
            self._queue(message)
            return
        await self._send(message)

    async def _send(self, message: ASGISendEvent) -> None:
        try:
            await self.send_now(message)
        except OSError:
            if message["type"] not in ("websocket.send", "websocket.close"):
                raise

    def _queue(self, message: ASGISendEvent) -> None:
        size = len(message.get("text") or message.get("bytes") or b"")  # type: ignore[arg-type]
        self.backlog.append((message, size))
        self.backlog_bytes += size
        if self.backlog_bytes > self.max_backlog_bytes:
            self.backlog.clear()
            self.backlog_bytes = 0
            if self.transport is not None:
                self.transport.abort()  # the server then reports websocket.disconnect
            return
        if self.writer is None:
            self.writer = asyncio.get_running_loop().create_task(self._write_backlog())

    async def _write_backlog(self) -> None:
        try:
            while self.backlog:
                message, size = self.backlog.popleft()
                self.backlog_bytes -= size
                await self._send(message)
        finally:
            self.writer = None


def abort_unanswered_uvicorn_pings() -> None:
    """A peer that does not answer uvicorn's pings is aborted, not closed politely (idempotent).

    uvicorn closes such a socket with `transport.close()`, which first waits
    for the write buffer to drain: with a peer that stopped reading it never
    does, so the socket (and whatever waits on it) would stay forever.
    """
    try:
        from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
    except ImportError:
        return
    original = WebSocketsSansIOProtocol.keepalive_timeout
    if getattr(original, "chat_abort", False):
        return

    def keepalive_timeout(self: Any) -> None:
        original(self)
        if self.transport.get_write_buffer_size():
            self.transport.abort()

    keepalive_timeout.chat_abort = True  # type: ignore[attr-defined]
    WebSocketsSansIOProtocol.keepalive_timeout = keepalive_timeout  # type: ignore[method-assign]


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

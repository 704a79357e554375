"""Enforce the contract's 64 KiB websocket message limit inside daphne itself.

Daphne's websocket library (autobahn) only lets an application close with
1000 or 3000-4999, so a consumer cannot send the contract's 1009 ("message
too big") itself: its close raises and daphne falls back to 1011. Autobahn
does close with 1009 when a message exceeds `maxMessagePayloadSize`, and it
refuses to buffer more than that, which also keeps a flood of huge frames
from costing memory. Daphne sets that option from its CLI (1 MiB by
default); the documented start command is plain `daphne config.asgi:application`,
so the limit is applied where daphne configures its factory.
"""

from typing import Any


def limit_daphne_messages(max_bytes: int) -> None:
    """Cap daphne's websocket message and frame size at `max_bytes` (idempotent)."""
    try:
        from daphne.ws_protocol import WebSocketFactory
    except ImportError:  # served by another ASGI server: the consumer's own check applies
        return
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

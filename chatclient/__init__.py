"""Reference Python client for the chat websocket (see docs/delivery.md)."""

from .client import ChatClient, ChatClientError, FatalCloseError, SendFailedError

__all__ = ["ChatClient", "ChatClientError", "FatalCloseError", "SendFailedError"]

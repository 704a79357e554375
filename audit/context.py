"""How the current moderation action reached the server: the audit trail's `path`.

Each entry point says so once: the REST and admin middleware for every request
(`audit.middleware`), the chat consumer for its whole socket. A context variable
carries it from there to `audit.services.audit_record`, through every
`sync_to_async` / `database_sync_to_async` hop, since asgiref runs the sync
function in a copy of the caller's context. Nothing set (a shell, a management
command, a test calling a service directly) is `admin`: the contract knows three
paths, and an operator acting on the server is staff's back office, as the admin is.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token

WEBSOCKET = "websocket"
REST = "rest"
ADMIN = "admin"
_path: ContextVar[str] = ContextVar("audit_path", default=ADMIN)


def current_path() -> str:
    """The path of the action being served now (`admin` outside any request or socket: a shell or a command)."""
    return _path.get()


def set_path(path: str) -> Token[str]:
    """Mark the rest of this context (e.g. a socket's task) as coming by `path`."""
    return _path.set(path)


@contextmanager
def entry_path(path: str) -> Iterator[None]:
    """Mark what runs inside the block as coming by `path`."""
    token = _path.set(path)
    try:
        yield
    finally:
        _path.reset(token)

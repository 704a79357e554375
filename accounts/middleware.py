"""Websocket authentication by `Authorization: Token <key>` for non-browser clients.

Sits inside AuthMiddlewareStack: a session user (browsers) is kept; otherwise
a valid DRF token sets `scope["user"]`.
"""

from typing import Any

from channels.auth import UserLazyObject
from channels.db import database_sync_to_async
from django.contrib.auth.models import AnonymousUser


@database_sync_to_async
def _user_for_token(key: str) -> Any:
    from rest_framework.authtoken.models import Token

    token = Token.objects.select_related("user").filter(key=key).first()
    if token is None or not token.user.is_active:
        return AnonymousUser()
    return token.user


class TokenAuthMiddleware:
    """Resolve `Authorization: Token <key>` into the scope's user, in place.

    AuthMiddleware has put a `UserLazyObject` in the scope already; filling
    that object in, rather than copying the scope as BaseMiddleware does,
    keeps one scope dict fewer alive for every open socket.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        header = next((value for name, value in scope.get("headers") or () if name == b"authorization"), b"")
        scheme, _, key = header.decode("latin1").partition(" ")
        if scheme.lower() == "token" and key.strip():
            # AuthMiddleware has already resolved the session user; a logged-in
            # session wins over a token.
            user = scope.get("user")
            if user is None or not user.is_authenticated:
                token_user = await _user_for_token(key.strip())
                if isinstance(user, UserLazyObject):
                    user._wrapped = token_user
                else:
                    scope["user"] = token_user
        return await self.inner(scope, receive, send)

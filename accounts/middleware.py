"""Websocket authentication by `Authorization: Token <key>` for non-browser clients.

Sits inside AuthMiddlewareStack: a session user (browsers) is kept; otherwise
a valid DRF token sets `scope["user"]`.
"""

from typing import Any

from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from django.contrib.auth.models import AnonymousUser


@database_sync_to_async
def _user_for_token(key: str) -> Any:
    from rest_framework.authtoken.models import Token

    token = Token.objects.select_related("user").filter(key=key).first()
    if token is None or not token.user.is_active:
        return AnonymousUser()
    return token.user


class TokenAuthMiddleware(BaseMiddleware):
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        header = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin1")
        scheme, _, key = header.partition(" ")
        if scheme.lower() == "token" and key.strip():
            # AuthMiddleware has already resolved the session user; a logged-in
            # session wins over a token.
            user = scope.get("user")
            if user is None or not user.is_authenticated:
                scope = dict(scope, user=await _user_for_token(key.strip()))
        return await super().__call__(scope, receive, send)

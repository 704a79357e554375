"""Origin check for websocket handshakes.

Channels' AllowedHostsOriginValidator refuses a handshake with no Origin at
all; the contract refuses only a *present* Origin whose host is not allowed
(browsers always send one, other clients such as bots usually do not).
"""

from typing import Any
from urllib.parse import ParseResult

from channels.security.websocket import OriginValidator
from django.conf import settings


class _Validator(OriginValidator):
    def valid_origin(self, parsed_origin: ParseResult | None) -> bool:
        if parsed_origin is None:
            return True
        return self.validate_origin(parsed_origin)


def OriginHeaderValidator(application: Any) -> _Validator:  # noqa: N802 - mirrors channels' factory
    allowed_hosts = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed_hosts:
        allowed_hosts = ["localhost", "127.0.0.1", "[::1]"]
    return _Validator(application, allowed_hosts)

"""Every API error as `{"detail": "...", "code": "..."}` with the contract's status and code.

Services raise `common.errors.ChatError` subclasses, which already carry the
contract's code and status; DRF and Django raise their own exceptions, mapped
here to the same shape so a client handles exactly one error format.
"""

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from redis.exceptions import RedisError
from rest_framework import exceptions as drf
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from common.errors import ChatError, RateLimited, Unavailable

logger = logging.getLogger(__name__)

# DRF exception class -> contract code. Anything not listed keeps DRF's own
# `default_code` (e.g. 405 method_not_allowed, 415 unsupported_media_type).
_CODES: list[tuple[type[drf.APIException], str]] = [
    (drf.ValidationError, "bad_request"),
    (drf.ParseError, "bad_request"),
    (drf.NotAuthenticated, "not_authenticated"),
    (drf.AuthenticationFailed, "not_authenticated"),
    (drf.PermissionDenied, "forbidden"),
    (drf.NotFound, "not_found"),
    (drf.Throttled, "rate_limited"),
]

# TokenAuthentication's scheme: advertised on every 401 (RFC 9110 requires a
# WWW-Authenticate header on 401 responses).
AUTH_SCHEME = "Token"


def error_body(detail: str, code: str) -> dict[str, str]:
    return {"detail": detail, "code": code}


def flatten_detail(detail: Any, prefix: str = "") -> list[str]:
    """Turn DRF's nested `{"field": ["msg"]}` into readable lines like `field: msg`."""
    if isinstance(detail, dict):
        lines: list[str] = []
        for key, value in detail.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if key == "non_field_errors":
                name = prefix
            lines.extend(flatten_detail(value, name))
        return lines
    if isinstance(detail, list):
        return [line for item in detail for line in flatten_detail(item, prefix)]
    return [f"{prefix}: {detail}" if prefix else str(detail)]


def _code_for(exc: drf.APIException) -> str:
    for cls, code in _CODES:
        if isinstance(exc, cls):
            return code
    return str(exc.default_code)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's EXCEPTION_HANDLER: the contract's error shape for every known failure.

    Returns None (a 500) only for genuine bugs, never for bad input.
    """
    if isinstance(exc, ChatError):
        retry = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else None
        set_rollback()
        return Response(error_body(exc.detail, exc.code), status=exc.status, headers=retry)

    if isinstance(exc, OperationalError | InterfaceError | RedisError):
        # The database or Redis (rate limits, presence) went away (restart,
        # failover): tell the client to retry, as the websocket does with
        # `unavailable`.
        logger.warning("a backing service is unavailable while serving the API", exc_info=True)
        unavailable = Unavailable()
        return Response(error_body(unavailable.detail, unavailable.code), status=unavailable.status)

    if isinstance(exc, Http404):
        exc = drf.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf.PermissionDenied()
    elif isinstance(exc, DjangoValidationError):
        exc = drf.ValidationError("; ".join(exc.messages))

    if not isinstance(exc, drf.APIException):
        return None

    code = _code_for(exc)
    headers: dict[str, str] = {}
    status_code = exc.status_code
    if code == "not_authenticated":
        # DRF answers 403 when the first authentication class (session) has no
        # WWW-Authenticate scheme; the contract says 401.
        status_code = status.HTTP_401_UNAUTHORIZED
        headers["WWW-Authenticate"] = AUTH_SCHEME
    wait = getattr(exc, "wait", None)
    if wait:
        headers["Retry-After"] = str(max(1, int(wait + 0.999)))

    detail = "; ".join(flatten_detail(exc.detail)) if isinstance(exc.detail, dict | list) else str(exc.detail)
    set_rollback()
    return Response(error_body(detail or "Bad request.", code), status=status_code, headers=headers)


# CSRF-exempt: it changes nothing, and otherwise a POST with a token to a
# mistyped path (e.g. a slug that is not one) got Django's HTML 403 CSRF page.
@csrf_exempt
def not_found_view(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    """Unknown paths under /api/ answer in the API's error shape rather than an HTML page."""
    return JsonResponse(error_body("No such endpoint.", "not_found"), status=404)

"""Login throttling: django-axes, counting failures in Django's cache.

After CHAT_LOGIN_FAILURE_LIMIT failed logins for one username from one
address, every login for that pair is refused, whatever the password, until
CHAT_LOGIN_LOCKOUT_MINUTES have passed since the failure that locked it. The
counters live in the default cache (Redis when REDIS_URL is set), so every
server process sees the same ones.

axes hooks `django.contrib.auth.authenticate()`, so the login page, the admin
login and the token endpoint are all covered. Its own lockout responses (an
HTML page, or a JSON body of its own shape) are not used: each login path
turns a refusal into its own answer, the token endpoint a 429 `rate_limited`
and the forms an error on the page (see `LoginThrottleFormMixin`).
"""

import logging
import time
from typing import Any

from axes.backends import AxesStandaloneBackend
from axes.exceptions import AxesBackendPermissionDenied
from axes.handlers.cache import AxesCacheHandler
from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_cache, get_cache_timeout, get_client_cache_keys, get_credentials
from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

# Set on the request by the backend when the lockout refused a login before
# the password was even checked (the attempt that reaches the limit is an
# ordinary failure and is answered as one).
THROTTLED_ATTR = "chat_login_throttled"


def login_username(request: HttpRequest | None, credentials: dict[str, Any] | None) -> str | None:
    """The username a login attempt is counted under (AXES_USERNAME_CALLABLE).

    Case-folded, so `Alice` and `alice` share one counter and trying every
    spelling of a name buys no extra attempts.
    """
    username = (credentials or {}).get("username")
    if username is None and request is not None:
        username = request.POST.get("username")
    if not isinstance(username, str):
        return None
    return username.strip().casefold()


def client_ip(request: HttpRequest) -> str | None:
    """The client's address (AXES_CLIENT_IP_CALLABLE).

    REMOTE_ADDR, unless CHAT_TRUSTED_PROXY_COUNT says that many reverse
    proxies of ours stand in front of the server: then X-Forwarded-For's
    entry that the outermost of them added. Anything further left in that
    header was written by the client and is never trusted, or a client could
    pick a fresh address for every attempt.
    """
    proxies = settings.CHAT_TRUSTED_PROXY_COUNT
    remote = request.META.get("REMOTE_ADDR") or None
    if proxies <= 0:
        return remote
    hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    if len(hops) < proxies:
        # Reached us without passing through every proxy: the peer is the
        # only address we know.
        return remote
    return hops[-proxies]


class LoginThrottleBackend(AxesStandaloneBackend):
    """First in AUTHENTICATION_BACKENDS: refuses a locked-out login before any password check.

    Calls without a request (management commands, the test client's
    `login()`) have no address to count by and are not throttled; nothing
    from the network authenticates that way.
    """

    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> None:
        if request is None:
            return None
        try:
            return super().authenticate(request, username=username, password=password, **kwargs)
        except AxesBackendPermissionDenied:
            setattr(request, THROTTLED_ATTR, True)
            raise


class LoginThrottleHandler(AxesCacheHandler):
    """axes' cache handler that also remembers when each lockout ends, for Retry-After."""

    def user_login_failed(self, sender: Any, credentials: dict, request: Any = None, **kwargs: Any) -> None:
        super().user_login_failed(sender, credentials, request, **kwargs)
        # axes sets this only when it counted the attempt (not for an attempt
        # refused while locked out, which must not extend the lockout).
        if request is None or getattr(request, "axes_failures_since_start", None) is None:
            return
        timeout = get_cache_timeout(request)
        if not timeout:
            return
        until = time.time() + timeout
        for key in get_client_cache_keys(request, credentials):
            self.cache.set(f"{key}:until", until, timeout=timeout)


def login_succeeded(request: HttpRequest, user: Any) -> None:
    """Clear the failures of a login that authenticated without `login()` (the token endpoint).

    `django.contrib.auth.login()` does this through axes' user_logged_in
    receiver; a token is a login too, so the count restarts after it.
    """
    AxesProxyHandler.user_logged_in(sender=login_succeeded, request=request, user=user)


def login_throttled(request: HttpRequest) -> bool:
    """Whether the last authenticate() on this request was refused by the lockout."""
    return bool(getattr(request, THROTTLED_ATTR, False))


def retry_after(request: HttpRequest, username: str) -> float:
    """Seconds until this username may try again from this request's address."""
    cache = get_cache()
    keys = get_client_cache_keys(request, get_credentials(username))
    until = max((cache.get(f"{key}:until") or 0.0) for key in keys)
    remaining = until - time.time()
    if remaining > 0:
        return remaining
    # Counted before this code tracked the end (or the entry just expired):
    # the full lockout is the most it can be.
    return float(get_cache_timeout(request) or 60)


UNAVAILABLE_MESSAGE = "Signing in is briefly unavailable. Try again in a moment."


def lockout_message(seconds: float) -> str:
    minutes = max(1, int(seconds + 59) // 60)
    unit = "minute" if minutes == 1 else "minutes"
    return f"Too many failed logins. Try again in {minutes} {unit}."


class LoginThrottleFormMixin:
    """An authentication form that says so when the lockout refused the login.

    Without it the page would claim the password was wrong, even when it
    was right and the attempt was refused for being locked out.
    """

    request: HttpRequest | None
    cleaned_data: dict[str, Any]

    def clean(self) -> dict[str, Any]:
        try:
            return super().clean()  # type: ignore[misc]
        except RedisError:
            # The counters live in the cache. Without them no login can be
            # checked against the lockout, and letting it through would turn an
            # outage into a window for guessing passwords: refuse, and say why
            # on the page instead of a server error (the token endpoint answers
            # 503 `unavailable` for the same reason).
            logger.warning("login refused: the login throttle's cache is unavailable", exc_info=True)
            raise forms.ValidationError(UNAVAILABLE_MESSAGE, code="unavailable") from None

    def get_invalid_login_error(self) -> forms.ValidationError:
        if self.request is not None and login_throttled(self.request):
            username = self.cleaned_data.get("username") or ""
            return forms.ValidationError(lockout_message(retry_after(self.request, username)), code="rate_limited")
        return super().get_invalid_login_error()  # type: ignore[misc]


class LoginForm(LoginThrottleFormMixin, AuthenticationForm):
    """The login page's form."""


class AdminLoginForm(LoginThrottleFormMixin, AdminAuthenticationForm):
    """The admin's login form, throttled the same way."""

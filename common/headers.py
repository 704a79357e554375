"""Response headers that Django and django-csp do not set themselves."""

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from django.utils.decorators import sync_and_async_middleware


@sync_and_async_middleware
def permissions_policy_middleware(get_response: Callable[[HttpRequest], Any]) -> Callable[[HttpRequest], Any]:
    """Adds `Permissions-Policy` (settings.CHAT_PERMISSIONS_POLICY) to every response.

    The pages use none of the powerful features it switches off, so a script
    that got in despite the CSP, or a page that frames ours, cannot use them either.
    """
    policy: str = settings.CHAT_PERMISSIONS_POLICY

    def add(response: HttpResponseBase) -> HttpResponseBase:
        if policy and "Permissions-Policy" not in response:
            response["Permissions-Policy"] = policy
        return response

    if iscoroutinefunction(get_response):

        async def async_middleware(request: HttpRequest) -> HttpResponseBase:
            return add(await get_response(request))

        return async_middleware

    def middleware(request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        return add(get_response(request))

    return middleware

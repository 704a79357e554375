"""Marks each HTTP request's moderation actions as coming by REST (/api/) or the admin."""

from collections.abc import Awaitable, Callable
from functools import cache

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase
from django.urls import reverse

from .context import ADMIN, REST, entry_path


@cache
def _admin_prefix() -> str:
    return reverse("admin:index")


def path_for(request_path: str) -> str | None:
    """The audit path of a request to `request_path`, or None for pages that moderate nothing."""
    if request_path.startswith("/api/"):
        return REST
    if request_path.startswith(_admin_prefix()):
        return ADMIN
    return None


class AuditPathMiddleware:
    """Sets `audit.context` for the whole request, views and services included (sync or async)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase | Awaitable[HttpResponseBase]]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.is_async:
            return self.__acall__(request)
        path = path_for(request.path_info)
        if path is None:
            return self.get_response(request)
        with entry_path(path):
            return self.get_response(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        path = path_for(request.path_info)
        if path is None:
            return await self.get_response(request)  # type: ignore[misc]
        with entry_path(path):
            return await self.get_response(request)  # type: ignore[misc]

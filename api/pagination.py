"""Query-parameter parsing and page links for history (keyset by seq) and search (offset).

History pages never use OFFSET: `before`/`after` are seqs, and every page is a
range scan on the (room, seq) unique index, so page 1 and page 10,000 cost the
same.
"""

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.http import QueryDict
from rest_framework.request import Request

from common.errors import BadRequest
from messaging.models import Message

HISTORY_DEFAULT_LIMIT = 50
HISTORY_MAX_LIMIT = 200
SEARCH_DEFAULT_LIMIT = 20
SEARCH_MAX_LIMIT = 100
# Largest value a bigint column (and SQLite's INTEGER) holds; bigger numbers
# would make the database raise instead of returning an empty page.
MAX_BIGINT = 2**63 - 1


def int_param_schema(minimum: int = 0) -> dict[str, Any]:
    """The OpenAPI schema of what `int_param` accepts (so the fuzzer's valid values are valid here)."""
    return {"type": "integer", "minimum": minimum, "maximum": MAX_BIGINT}


# What `limit_param` accepts: 1 or more (above the maximum is clamped, not refused).
LIMIT_SCHEMA: dict[str, Any] = {"type": "integer", "minimum": 1}


def int_param(params: QueryDict, name: str, *, minimum: int = 0) -> int | None:
    """An optional integer query parameter; BadRequest unless it is a whole number >= minimum."""
    raw = params.get(name)
    if raw is None:
        return None
    raw = raw.strip()
    # isdigit() would accept "²" and other Unicode digits that int() rejects.
    if not raw.isascii() or not raw.lstrip("-").isdigit():
        raise BadRequest(f"{name} must be an integer.")
    value = int(raw)
    if value < minimum:
        raise BadRequest(f"{name} must be at least {minimum}.")
    if value > MAX_BIGINT:
        raise BadRequest(f"{name} is too large.")
    return value


def limit_param(params: QueryDict, *, default: int, maximum: int) -> int:
    """`limit`: default when absent, 400 for 0, negative or not a number, clamped to `maximum` above it."""
    raw = params.get("limit")
    if raw is None:
        return default
    raw = raw.strip()
    if not raw.isascii() or not raw.lstrip("-").isdigit():
        raise BadRequest("limit must be an integer.")
    value = int(raw)
    if value < 1:
        raise BadRequest("limit must be at least 1.")
    return min(value, maximum)


def page_url(request: Request, **params: int | str) -> str:
    """An absolute URL to this endpoint with exactly `params` as its query string."""
    return request.build_absolute_uri(f"{request.path}?{urlencode(params)}")


@dataclass(frozen=True)
class HistoryLinks:
    previous: str | None
    next: str | None


def history_links(
    request: Request,
    *,
    messages: list[Message],
    before: int | None,
    after: int | None,
    limit: int,
    has_older: bool,
    has_newer: bool,
) -> HistoryLinks:
    """`previous` = the page before the first result, `next` = the page after the last.

    `has_older`/`has_newer` say whether anything lies below the first result
    and above the last one (or, for an empty page, below `after` + 1 and at
    or above `before`); the links are null when nothing does.
    """
    if messages:
        older_cursor = messages[0].seq
        newer_cursor = messages[-1].seq
    else:
        older_cursor = (after or 0) + 1
        newer_cursor = max((before if before is not None else 1) - 1, 0)
    previous = page_url(request, before=older_cursor, limit=limit) if has_older else None
    following = page_url(request, after=newer_cursor, limit=limit) if has_newer else None
    return HistoryLinks(previous=previous, next=following)

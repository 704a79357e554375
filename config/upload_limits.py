"""Refuse an oversized upload before Django reads its body.

Django's ASGI handler reads a request's whole body (spooling it to disk)
before any view runs, and neither uvicorn nor daphne limits a body's size.
So an upload bigger than CHAT_MAX_UPLOAD_BYTES would be received in full
only to be refused. This wrapper answers 413 `too_large` at once from the
`Content-Length` header, and for a body without one (chunked) as soon as
more than the limit has arrived, telling Django the client went away so it
sends nothing itself. The view checks the file's exact size again
(messaging.attachments.attachment_create): this layer only stops the waste.
"""

import json
import re
from typing import Any

# The upload endpoint only: every other request is JSON, bounded by
# DATA_UPLOAD_MAX_MEMORY_SIZE.
UPLOAD_PATH = re.compile(r"^/api/rooms/[^/]+/attachments/?$")
# Room for the multipart envelope (boundaries, part headers) around the file.
MULTIPART_SLACK = 64 * 1024


def too_large_body(limit: int) -> bytes:
    detail = f"Files are limited to {limit} bytes."
    return json.dumps({"detail": detail, "code": "too_large"}).encode()


class UploadSizeLimit:
    """ASGI middleware: 413 for a POST to the upload endpoint whose body exceeds the limit."""

    def __init__(self, app: Any, max_file_bytes: int) -> None:
        self.app = app
        self.max_file_bytes = max_file_bytes
        self.max_body_bytes = max_file_bytes + MULTIPART_SLACK

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or not UPLOAD_PATH.match(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        length = _content_length(scope)
        if length is not None and length > self.max_body_bytes:
            await self._refuse(send)
            return
        if length is not None:
            # The server never passes on more than Content-Length announced.
            await self.app(scope, receive, send)
            return

        received = 0
        refused = False

        async def counting_receive() -> Any:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    refused = True
                    await self._refuse(send)
                    # Django drops the request (RequestAborted) without answering.
                    return {"type": "http.disconnect"}
            return message

        await self.app(scope, counting_receive, send)

    async def _refuse(self, send: Any) -> None:
        body = too_large_body(self.max_file_bytes)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    # The rest of the body is not read: this connection cannot carry another request.
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})


def _content_length(scope: Any) -> int | None:
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None

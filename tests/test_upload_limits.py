"""config.upload_limits: an oversized upload is refused before Django reads its body."""

import json

from channels.testing import HttpCommunicator

from config.upload_limits import MULTIPART_SLACK, UploadSizeLimit

UPLOAD = "/api/rooms/lobby/attachments/"
LIMIT = 1000


class App:
    """Stands in for Django: records whether it ran and what body it received."""

    def __init__(self) -> None:
        self.called = False
        self.body = b""
        self.disconnected = False

    async def __call__(self, scope, receive, send) -> None:
        self.called = True
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.disconnected = True
                return
            self.body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def run(app, *, path=UPLOAD, method="POST", headers=(), chunks=(b"",)):
    scope = {"type": "http", "method": method, "path": path, "headers": list(headers)}
    pending = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1} for i, chunk in enumerate(chunks)
    ]
    sent = []

    async def receive():
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    await UploadSizeLimit(app, LIMIT)(scope, receive, send)
    return sent


def assert_413(sent) -> None:
    assert sent[0]["status"] == 413
    assert (b"connection", b"close") in sent[0]["headers"]
    assert json.loads(sent[1]["body"])["code"] == "too_large"


async def test_content_length_over_the_limit_is_refused_before_the_app_runs():
    app = App()
    sent = await run(app, headers=[(b"content-length", str(LIMIT + MULTIPART_SLACK + 1).encode())], chunks=[b"x"])
    assert_413(sent)
    assert not app.called


async def test_a_chunked_body_is_cut_off_once_it_passes_the_limit():
    app = App()
    chunk = b"x" * 20_000
    sent = await run(app, chunks=[chunk] * 10)
    assert_413(sent)
    # Django saw the client "go away" and answered nothing itself.
    assert app.disconnected and len(sent) == 2


async def test_bodies_within_the_limit_and_other_requests_pass_through():
    for kwargs in (
        {"headers": [(b"content-length", b"500")], "chunks": [b"x" * 500]},
        {"chunks": [b"x" * 100, b"y" * 100]},
        {"path": "/api/rooms/lobby/messages/", "chunks": [b"x" * 200_000]},
        {"method": "PUT", "chunks": [b"x" * 200_000]},
    ):
        app = App()
        sent = await run(app, **kwargs)
        assert sent[0]["status"] == 201, kwargs
        assert app.body == b"".join(kwargs["chunks"])


async def test_the_served_application_refuses_by_content_length(settings):
    from config.asgi import application

    size = settings.CHAT_MAX_UPLOAD_BYTES + MULTIPART_SLACK + 1
    communicator = HttpCommunicator(
        application,
        "POST",
        UPLOAD,
        body=b"",
        headers=[(b"content-length", str(size).encode()), (b"content-type", b"multipart/form-data; boundary=x")],
    )
    response = await communicator.get_response()
    assert response["status"] == 413
    assert json.loads(response["body"]) == {
        "detail": f"Files are limited to {settings.CHAT_MAX_UPLOAD_BYTES} bytes.",
        "code": "too_large",
    }

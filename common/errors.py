"""Domain errors shared by services, the websocket consumer and the REST API.

Each carries the contract's error `code`; the consumer turns it into an
`error` frame and the API into `{"detail", "code"}` with `status`.
"""


class ChatError(Exception):
    code = "bad_request"
    status = 400
    default_detail = "Bad request."

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail or self.default_detail
        super().__init__(self.detail)


class BadRequest(ChatError):
    pass


class TooLong(ChatError):
    code = "too_long"
    default_detail = "Too long."


class NotFound(ChatError):
    code = "not_found"
    status = 404
    default_detail = "Not found."


class Forbidden(ChatError):
    code = "forbidden"
    status = 403
    default_detail = "You do not have permission to do that."


class NotJoined(ChatError):
    code = "not_joined"
    status = 400
    default_detail = "Join the room first."


class RoomLocked(ChatError):
    code = "room_locked"
    status = 409
    default_detail = "This room is locked."


class RateLimited(ChatError):
    code = "rate_limited"
    status = 429
    default_detail = "You are sending too fast."

    def __init__(self, retry_after: float, detail: str | None = None) -> None:
        super().__init__(detail)
        self.retry_after = max(1, int(retry_after + 0.999))


class Unavailable(ChatError):
    code = "unavailable"
    status = 503
    default_detail = "The service is briefly unavailable; try again."


class TooLarge(ChatError):
    code = "too_large"
    status = 413
    default_detail = "Too large."

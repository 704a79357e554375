"""`GET /api/ws-schema/`: the published websocket frame schema, public, valid, and complete."""

import json

import pytest
from jsonschema import Draft202012Validator

import common.errors
from messaging.consumers import ChatConsumer
from messaging.ws_schema import ws_schema
from tests.wsschema import FrameSchemaError, check_client_frame, check_server_frame

pytestmark = pytest.mark.django_db

MESSAGE = {
    "id": 7,
    "room": "lobby",
    "seq": 3,
    "author": {"id": 1, "username": "bob", "display_name": "Bob"},
    "body": "hi *there*",
    "html": "<p>hi <em>there</em></p>",
    "client_id": None,
    "created_at": "2026-11-30T10:00:00.123456Z",
    "edited_at": None,
    "deleted": False,
    "reply_to": None,
    "reactions": [{"emoji": "👍", "count": 2, "me": False}],
    "mentions": [],
    "attachments": [{"id": 4, "name": "a.png", "size": 10, "content_type": "image/png", "url": "/api/attachments/4/"}],
}


def frame_kinds(definition: str) -> set[str]:
    defs = ws_schema()["$defs"]
    return {defs[one["$ref"].rsplit("/", 1)[1]]["properties"]["type"]["const"] for one in defs[definition]["oneOf"]}


def test_served_without_login_as_json(api):
    r = api().get("/api/ws-schema/")
    assert r.status_code == 200
    assert r["Content-Type"].startswith("application/json")
    schema = json.loads(r.content)
    assert schema == ws_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def test_declared_in_the_openapi_schema(api):
    operation = api().get("/api/schema/").json()["paths"]["/api/ws-schema/"]["get"]
    assert operation.get("security", [{}]) == [{}]
    assert "200" in operation["responses"]


def test_every_client_frame_the_consumer_handles_is_described():
    assert frame_kinds("ClientFrame") == set(ChatConsumer.handlers)


def test_every_server_frame_kind_is_described():
    assert frame_kinds("ServerFrame") == {
        "joined",
        "left",
        "ack",
        "message",
        "message_updated",
        "message_deleted",
        "typing",
        "presence",
        "reaction",
        "mention",
        "room_updated",
        "error",
        "pong",
    }


def test_error_codes_are_every_domain_errors_code():
    codes = {
        cls.code
        for cls in vars(common.errors).values()
        if isinstance(cls, type) and issubclass(cls, common.errors.ChatError)
    }
    declared = set(ws_schema()["$defs"]["ErrorCode"]["enum"])
    # too_large is the contract's code for an upload over the limit; a frame over it is closed with 1009.
    assert codes <= declared and declared - codes <= {"too_large"}


def test_server_frames_are_closed_to_unknown_members():
    defs = ws_schema()["$defs"]
    for one in defs["ServerFrame"]["oneOf"]:
        assert defs[one["$ref"].rsplit("/", 1)[1]]["additionalProperties"] is False


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "ack", "ref": "r1", "message": MESSAGE},
        {"type": "message_deleted", "message": {**MESSAGE, "deleted": True, "body": "", "html": ""}},
        {"type": "error", "code": "rate_limited", "detail": "Slow down.", "retry_after": 3, "room": "lobby"},
        {"type": "joined", "room": "lobby", "last_seq": 0, "online": [MESSAGE["author"]], "recovered": True},
        {"type": "pong"},
    ],
)
def test_good_server_frames_pass(frame):
    check_server_frame(frame)


@pytest.mark.parametrize(
    ("frame", "complaint"),
    [
        ({"type": "ack", "message": {**MESSAGE, "extra": 1}}, "Additional properties"),
        ({"type": "ack", "message": {**MESSAGE, "created_at": "yesterday"}}, "date-time"),
        ({"type": "error", "code": "rate_limited", "detail": "Slow down."}, "retry_after"),
        ({"type": "error", "code": "bad_request", "detail": "x", "retry_after": 3}, "should not be valid"),
        ({"type": "error", "code": "oops", "detail": "x"}, "oops"),
        ({"type": "pong", "ref": ""}, "ref"),
        ({"type": "kicked"}, "not in the ServerFrame schema"),
    ],
)
def test_drift_is_caught(frame, complaint):
    with pytest.raises(FrameSchemaError, match=complaint):
        check_server_frame(frame)


def test_client_frames():
    check_client_frame({"type": "send", "room": "lobby", "body": "hi", "client_id": "c1", "reply_to": None})
    check_client_frame({"type": "react", "room": "lobby", "message_id": 1, "emoji": "👍", "on": False, "ref": "x"})
    with pytest.raises(FrameSchemaError):
        check_client_frame({"type": "send", "room": "lobby", "body": "hi"})
    with pytest.raises(FrameSchemaError):
        check_client_frame({"type": "join", "room": "Lobby"})


@pytest.mark.parametrize(
    "extra",
    [{"body": "hi"}, {"body": "", "attachments": [4]}, {"attachments": [4]}, {"body": None, "attachments": [4, 5]}],
)
def test_a_send_needs_a_body_or_attachments_as_the_server_does(extra):
    check_client_frame({"type": "send", "room": "lobby", "client_id": "c1", **extra})


@pytest.mark.parametrize("extra", [{}, {"attachments": []}, {"body": None}, {"body": None, "attachments": []}])
def test_a_send_with_neither_is_not_a_frame(extra):
    with pytest.raises(FrameSchemaError):
        check_client_frame({"type": "send", "room": "lobby", "client_id": "c1", **extra})

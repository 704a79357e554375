"""Frames the websocket fuzzer (tests/fuzz/test_ws_fuzz.py) found mishandled, kept as regressions."""

import pytest
from channels.db import database_sync_to_async

from messaging.models import Message

pytestmark = [pytest.mark.django_db(transaction=True)]


async def stored() -> int:
    return await database_sync_to_async(Message.objects.count)()


@pytest.mark.parametrize(
    "raw",
    [
        '{"type":"ping","ref":"\\ud83d"}',
        '{"type":"send","room":"lobby","body":"\\ud800","client_id":"c"}',
        '{"type":"send","room":"lobby","body":"ok","client_id":"\\udfff"}',
        '{"type":"join","room":"\\ud800"}',
        '{"type":"react","room":"lobby","message_id":1,"emoji":"\\ud83d","on":true}',
        '{"\\udc00":1,"type":"ping"}',
        b'{"type":"ping","ref":"\xed\xa0\x80"}',
    ],
)
async def test_lone_surrogates_are_bad_request_not_a_dead_socket(ws, bob, lobby, raw):
    # Found by the fuzzer: a lone surrogate echoed in `ref` or `room` could not
    # be encoded, so the error frame itself failed and the socket died (1011).
    async with ws(bob) as b:
        await b.join("lobby")
        if isinstance(raw, bytes):
            await b.comm.send_to(bytes_data=raw)
        else:
            await b.comm.send_to(text_data=raw)
        error = await b.recv()
        assert error == {
            "type": "error",
            "code": "bad_request",
            "detail": "Frames must be valid Unicode (no lone surrogates).",
        }
        await b.send(type="ping", ref="after")
        assert await b.recv() == {"type": "pong", "ref": "after"}
    assert await stored() == 0


@pytest.mark.parametrize("reply_to", [2**63, 10**40])
async def test_reply_to_beyond_any_id_is_not_found(ws, bob, lobby, reply_to):
    # Found by the fuzzer: the lookup overflowed the id column and the sender got `unavailable`.
    async with ws(bob) as b:
        await b.join("lobby")
        await b.send(type="send", room="lobby", body="hi", client_id="c1", reply_to=reply_to, ref="r")
        error = await b.recv()
        assert (error["type"], error["code"], error["ref"]) == ("error", "not_found", "r")
    assert await stored() == 0

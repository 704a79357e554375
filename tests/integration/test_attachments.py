"""Attachments through real server processes, with the reference client: upload on one, see and fetch on another."""

import io

import pytest
from PIL import Image

from chatclient import ChatClient
from chatclient.client import SendFailedError

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(90)]


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 9), "orange").save(buffer, format="PNG")
    return buffer.getvalue()


async def test_upload_send_and_download_across_processes(backends, servers, tmp_path):
    tokens = backends.seed(["alice", "bob"], ["lobby"])
    # Two processes sharing one folder, as two machines would share a bucket.
    env = backends.env(DJANGO_MEDIA_ROOT=str(tmp_path / "media"), CHAT_MAX_UPLOAD_BYTES="100000")
    a, b = servers(env), servers(env)
    alice = ChatClient(a.ws_url, tokens["alice"], rooms={"lobby": 0})
    bob = ChatClient(b.ws_url, tokens["bob"], rooms={"lobby": 0})
    for client in (alice, bob):
        await client.start()
    try:
        for client in (alice, bob):
            await client.wait_ready()
        picture = await alice.upload("lobby", "sunset.png", png(), "image/png")
        notes = await alice.upload("lobby", "notes.txt", b"bring snacks\n", "text/plain")
        assert (picture["content_type"], notes["content_type"]) == ("image/png", "text/plain")
        sent = await alice.send("lobby", "", attachments=[picture["id"], notes["id"]])
        assert [f["id"] for f in sent["attachments"]] == [picture["id"], notes["id"]]

        await bob.wait_for_seq("lobby", 1)
        heard = bob.rooms["lobby"].messages[-1]
        assert heard["attachments"] == sent["attachments"]
        assert await bob.download(heard["attachments"][0]) == png()
        assert await bob.download(heard["attachments"][1]) == b"bring snacks\n"

        # Used once: a second message cannot take it, on either process.
        with pytest.raises(SendFailedError) as refused:
            await alice.send("lobby", "again", attachments=[picture["id"]])
        assert refused.value.code == "bad_request"
        # Over the limit: refused by the server in front of Django, with the contract's code.
        with pytest.raises(SendFailedError) as too_large:
            await bob.upload("lobby", "big.bin", b"x" * 200_000)
        assert too_large.value.code == "too_large"
    finally:
        for client in (alice, bob):
            await client.stop()

"""A mention made through one server process reaches every socket of the user on another,
the ones that joined the room and the ones that did not."""

import pytest

from chatclient import ChatClient

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(60)]


async def test_mention_crosses_processes_to_every_socket(backends, servers):
    tokens = backends.seed(["alice", "bob", "carol"], ["lobby"])
    a = servers(backends.env())
    b = servers(backends.env())
    alice = ChatClient(a.ws_url, tokens["alice"], rooms={"lobby": 0})
    # bob: one socket in the room on B, one that joined nothing on B, one on A.
    in_room = ChatClient(b.ws_url, tokens["bob"], rooms={"lobby": 0})
    elsewhere = ChatClient(b.ws_url, tokens["bob"], rooms={})
    on_a = ChatClient(a.ws_url, tokens["bob"], rooms={})
    carol = ChatClient(b.ws_url, tokens["carol"], rooms={"lobby": 0})
    clients = [alice, in_room, elsewhere, on_a, carol]
    for client in clients:
        await client.start()
    try:
        for client in clients:
            await client.wait_ready()
        sent = await alice.send("lobby", "@bob, the build on A is green")
        assert [u["username"] for u in sent["mentions"]] == ["bob"]
        for client in (in_room, elsewhere, on_a):
            await client.wait_until(lambda c=client: len(c.mentions) == 1, within=10)
            (frame,) = client.mentions
            assert (frame["type"], frame["room"], frame["message"]["id"]) == ("mention", "lobby", sent["id"])
            assert frame["message"]["client_id"] is None
            assert [u["username"] for u in frame["message"]["mentions"]] == ["bob"]
        await in_room.wait_for_seq("lobby", 1)
        assert in_room.rooms["lobby"].messages[-1]["mentions"] == sent["mentions"]
        await carol.wait_for_seq("lobby", 1)
        assert carol.mentions == [] and alice.mentions == []
    finally:
        for client in clients:
            await client.stop()

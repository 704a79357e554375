"""A reply and a reaction made through one server process reach a socket on another."""

import asyncio

import pytest

from chatclient import ChatClient

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(60)]


async def test_reply_and_reaction_cross_processes(backends, servers):
    tokens = backends.seed(["alice", "bob"], ["lobby"])
    a = servers(backends.env())
    b = servers(backends.env())
    heard: list[dict] = []
    alice = ChatClient(a.ws_url, tokens["alice"], rooms={"lobby": 0})
    bob = ChatClient(b.ws_url, tokens["bob"], rooms={"lobby": 0}, on_reaction=heard.append)
    for client in (alice, bob):
        await client.start()
    try:
        for client in (alice, bob):
            await client.wait_ready()
        question = await bob.send("lobby", "question on B")
        answer = await alice.send("lobby", "answer on A", reply_to=question["id"])
        assert answer["reply_to"]["id"] == question["id"] and answer["reply_to"]["body"] == "question on B"
        await bob.wait_for_seq("lobby", 2)
        assert bob.rooms["lobby"].messages[-1]["reply_to"] == answer["reply_to"]

        await alice.react("lobby", question["id"], "🎉")
        await bob.wait_until(lambda: bob.reactions.get(question["id"]) == {"🎉": 1}, within=10)
        event = heard[-1]
        assert (event["room"], event["message_id"], event["emoji"], event["on"], event["count"]) == (
            "lobby",
            question["id"],
            "🎉",
            True,
            1,
        )
        assert event["user"]["username"] == "alice"
        await alice.react("lobby", question["id"], "🎉", on=False)
        await bob.wait_until(lambda: bob.reactions.get(question["id"]) == {}, within=10)
        assert heard[-1]["on"] is False and heard[-1]["count"] == 0
        await asyncio.sleep(0)
    finally:
        for client in (alice, bob):
            await client.stop()

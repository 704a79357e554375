"""The reference client against a real daphne: the long-absence path and the close codes it obeys."""

import asyncio

import pytest

from chatclient import ChatClient, FatalCloseError

pytestmark = [pytest.mark.timeout(90)]


@pytest.mark.postgres
async def test_more_than_the_replay_limit_is_paged_over_rest_while_live_continues(backends, servers):
    tokens = backends.seed(["alice", "bob"], ["deep"])
    backends.bulk_messages("deep", "alice", 1234)
    server = servers(backends.env(REDIS_URL=""))
    alice = ChatClient(server.ws_url, tokens["alice"], rooms={"deep": 1234})
    await alice.start()
    await alice.wait_ready()
    frames: list[dict] = []
    bob = ChatClient(server.ws_url, tokens["bob"], rooms={"deep": 0}, on_frame=frames.append)
    await bob.start()
    # Live messages keep coming while bob replays 500 and pages the other 734 over REST.
    await asyncio.gather(*(alice.send("deep", f"live {i}") for i in range(20)))
    await bob.wait_for_seq("deep", 1254, within=30)
    await asyncio.sleep(0.5)
    for client in (alice, bob):
        await client.stop()

    joined = [f for f in frames if f["type"] == "joined"]
    assert joined[0]["recovered"] is False and 1234 <= joined[0]["last_seq"] < 1254
    state = bob.rooms["deep"]
    assert [m["seq"] for m in state.messages] == list(range(1, 1255))
    assert state.duplicates == [] and state.gaps == []
    history = backends.history("deep")
    assert [(m["seq"], m["id"]) for m in state.messages] == [(row[0], row[1]) for row in history]


@pytest.mark.postgres
async def test_bad_token_is_final(backends, servers):
    server = servers(backends.env(REDIS_URL=""))
    client = ChatClient(server.ws_url, "not-a-token", rooms=["lobby"], backoff=(0.05, 0.1))
    await client.start()
    with pytest.raises(FatalCloseError):
        await client.wait_ready(within=5)
    await asyncio.sleep(0.5)
    assert client.fatal == 4401 and client.connections == 1 and client.closes == [4401]
    await client.stop()


@pytest.mark.postgres
@pytest.mark.redis
async def test_deactivated_user_is_closed_with_4403_and_not_reconnected(backends, servers):
    tokens = backends.seed(["alice", "mallory"], ["gate"])
    server = servers(backends.env())
    mallory = ChatClient(server.ws_url, tokens["mallory"], rooms=["gate"], backoff=(0.05, 0.1))
    await mallory.start()
    await mallory.wait_ready()
    backends.shell(
        "from accounts.models import User\nu = User.objects.get(username='mallory')\nu.is_active = False\nu.save()\n"
    )
    await mallory.wait_until(lambda: mallory.fatal is not None, within=10)
    assert mallory.fatal == 4403 and mallory.closes == [4403]
    with pytest.raises(FatalCloseError):
        await mallory.send("gate", "let me back in")
    await asyncio.sleep(0.5)
    assert mallory.connections == 1
    await mallory.stop()

"""Group commit: sends that queue up while a batch commits go out together."""

import asyncio

import pytest
from channels.db import database_sync_to_async

from messaging import writer as writer_module
from messaging.models import Message
from messaging.services import NewMessage
from tests.factories import UserFactory

pytestmark = [pytest.mark.django_db(transaction=True)]


async def test_concurrent_sends_share_transactions_and_all_commit(lobby, monkeypatch):
    sizes: list[int] = []
    real = writer_module._post_batch

    async def counting(requests, publish):
        sizes.append(len(requests))
        return await real(requests, publish)

    monkeypatch.setattr(writer_module, "_post_batch", counting)
    authors = [await database_sync_to_async(UserFactory)() for _ in range(20)]
    w = writer_module.writer()
    results = await asyncio.gather(
        *(w.submit(NewMessage(room_id=lobby.pk, author=a, body="hi", client_id="k")) for a in authors)
    )
    assert all(posted.created and posted.error is None for posted, _ in results)
    assert sorted(message["seq"] for _, message in results) == list(range(1, 21))
    assert sum(sizes) == 20 and len(sizes) < 20
    assert await database_sync_to_async(Message.objects.count)() == 20


async def test_a_failed_batch_acks_nobody(lobby, bob, monkeypatch):
    from django.db import OperationalError

    async def broken(requests, publish):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(writer_module, "_post_batch", broken)
    with pytest.raises(OperationalError):
        await writer_module.writer().submit(NewMessage(room_id=lobby.pk, author=bob, body="x", client_id="1"))


async def test_database_outage_is_an_unavailable_error_frame(ws, bob, lobby, monkeypatch):
    from django.db import OperationalError

    async def broken(requests, publish):
        raise OperationalError("could not connect to server")

    async with ws(bob) as b:
        await b.join("lobby")
        monkeypatch.setattr(writer_module, "_post_batch", broken)
        await b.send(type="send", room="lobby", body="x", client_id="1", ref="s")
        err = await b.recv_type("error")
        assert (err["code"], err["ref"], err["room"]) == ("unavailable", "s", "lobby")
        monkeypatch.undo()
        await b.send(type="send", room="lobby", body="x", client_id="1", ref="s2")
        ack = await b.recv_type("ack")
        assert ack["ref"] == "s2" and ack["message"]["seq"] == 1

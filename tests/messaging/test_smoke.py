import pytest

pytestmark = [pytest.mark.django_db(transaction=True)]


async def test_two_users_chat(ws, alice, bob, lobby):
    async with ws(alice) as a, ws(bob) as b:
        ja = await a.join("lobby")
        assert ja["last_seq"] == 0
        await b.join("lobby")
        await a.send(type="send", room="lobby", body=" hi bob ", client_id="c1", ref="r1")
        ack = await a.recv_type("ack")
        assert ack["ref"] == "r1" and ack["message"]["body"] == "hi bob" and ack["message"]["seq"] == 1
        m = await b.recv_type("message")
        assert m["message"]["body"] == "hi bob" and m["message"]["client_id"] is None
        m2 = await a.recv_type("message")
        assert m2["message"]["client_id"] == "c1"

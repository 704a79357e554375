"""`html` end to end over the websocket: ack, message, replay, message_updated, message_deleted, mention."""

import pytest
from channels.db import database_sync_to_async

from messaging.models import Message
from messaging.services import NewMessage, message_create, message_delete, message_edit, messages_create

pytestmark = [pytest.mark.django_db(transaction=True)]

REL = 'rel="nofollow noopener noreferrer"'


async def test_a_markdown_send_gets_html_in_the_ack_and_the_message(ws, alice, bob, lobby):
    body = "**bold** <script>alert(1)</script> see https://example.com and @bob"
    bob_link = f'<a href="/u/bob/" {REL}>@bob</a>'
    expected = (
        "<p><strong>bold</strong> &lt;script&gt;alert(1)&lt;/script&gt; see "
        f'<a href="https://example.com" {REL}>https://example.com</a> and {bob_link}</p>'
    )
    async with ws(alice) as a, ws(bob) as b:
        await a.join("lobby")
        await b.join("lobby")
        await a.send(type="send", room="lobby", body=body, client_id="c1", ref="r1")
        ack = await a.recv_type("ack")
        assert ack["message"]["body"] == body
        assert ack["message"]["html"] == expected
        assert (await b.recv_type("message"))["message"]["html"] == expected
        # Bob's own notice of the mention carries the same message.
        assert (await b.recv_type("mention"))["message"]["html"] == expected
    stored = await database_sync_to_async(Message.objects.get)(pk=ack["message"]["id"])
    assert stored.html == expected


async def test_replay_and_a_retry_carry_html(ws, alice, lobby):
    await database_sync_to_async(message_create)(room=lobby, author=alice, body="_one_", client_id="k1")
    async with ws(alice) as a:
        await a.send(type="join", room="lobby", after=0)
        replayed = await a.recv_type("message")
        assert replayed["message"]["html"] == "<p><em>one</em></p>"
        # A retry of a stored send is answered with the stored html.
        await a.send(type="send", room="lobby", body="_one_", client_id="k1", ref="again")
        ack = await a.recv_type("ack")
        assert ack["message"]["html"] == "<p><em>one</em></p>"


async def test_edit_renders_again_and_delete_blanks_it(ws, alice, bob, lobby):
    message, _ = await database_sync_to_async(message_create)(room=lobby, author=alice, body="*draft*")
    async with ws(bob) as b:
        await b.join("lobby")
        await database_sync_to_async(message_edit)(message=message, actor=alice, body="`final` for @bob")
        updated = await b.recv_type("message_updated")
        assert updated["message"]["html"] == (f'<p><code>final</code> for <a href="/u/bob/" {REL}>@bob</a></p>')
        await database_sync_to_async(message_delete)(message=message, actor=alice)
        deleted = await b.recv_type("message_deleted")
        assert deleted["message"]["html"] == "" and deleted["message"]["body"] == ""
    assert (await database_sync_to_async(Message.objects.get)(pk=message.pk)).html == ""


def test_a_batch_renders_each_message_with_its_own_mentions(alice, bob, carol, lobby):
    requests = [
        NewMessage(room_id=lobby.pk, author=alice, body="hi @bob"),
        NewMessage(room_id=lobby.pk, author=alice, body="<b>no</b> @nobody"),
        NewMessage(room_id=lobby.pk, author=bob, body="> @carol\n\n@alice"),
    ]
    results = messages_create(requests=requests)
    html = [posted.data["html"] for posted in results]
    assert html == [
        f'<p>hi <a href="/u/bob/" {REL}>@bob</a></p>',
        "<p>&lt;b&gt;no&lt;/b&gt; @nobody</p>",
        f'<blockquote>\n<p><a href="/u/carol/" {REL}>@carol</a></p>\n</blockquote>\n'
        f'<p><a href="/u/alice/" {REL}>@alice</a></p>',
    ]
    assert [m.html for m in Message.objects.order_by("seq")] == html

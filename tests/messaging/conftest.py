import json
from contextlib import asynccontextmanager

import pytest
from channels.testing import WebsocketCommunicator

from config.asgi import application
from tests.factories import token_for
from tests.wsschema import check_server_frame


class Client:
    """A WebsocketCommunicator with JSON helpers, on the real ASGI application."""

    def __init__(self, comm: WebsocketCommunicator) -> None:
        self.comm = comm

    async def send(self, **frame):
        await self.comm.send_to(text_data=json.dumps(frame))

    async def recv(self, timeout: float = 3) -> dict:
        """The next server frame, which must match the published frame schema (ServerFrame)."""
        return check_server_frame(await self.comm.receive_from(timeout=timeout))

    async def recv_type(self, kind: str, timeout: float = 3) -> dict:
        """Skip frames of other types (presence, typing) until one of `kind`."""
        while True:
            frame = await self.recv(timeout)
            if frame["type"] == kind:
                return frame

    async def nothing(self, timeout: float = 0.3, ignore: tuple[str, ...] = ("presence",)) -> None:
        # receive_nothing, unlike a timed-out receive_from, leaves the app running.
        while not await self.comm.receive_nothing(timeout):
            frame = await self.recv(timeout)
            if frame["type"] not in ignore:
                raise AssertionError(f"unexpected frame {frame}")

    async def join(self, room: str, **extra) -> dict:
        await self.send(type="join", room=room, **extra)
        return await self.recv_type("joined")


@pytest.fixture
def ws():
    """Open authenticated sockets: `async with ws(user) as client:`."""

    @asynccontextmanager
    async def open_socket(user=None, path="/ws/chat/", headers=None):
        hdrs = list(headers or [])
        if user is not None:
            from channels.db import database_sync_to_async

            key = await database_sync_to_async(token_for)(user)
            hdrs.append((b"authorization", f"Token {key}".encode()))
        comm = WebsocketCommunicator(application, path, headers=hdrs)
        connected, _ = await comm.connect()
        assert connected
        try:
            yield Client(comm)
        finally:
            await comm.disconnect()

    return open_socket

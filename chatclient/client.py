"""A small reference client that keeps the server's delivery promise end to end.

What a client must do (docs/delivery.md) and what this one does:

- keep the last seq it holds per room, and on every (re)connect join each room
  with `after` = that seq, so the server replays what was missed;
- when `joined.recovered` is false, page the rest over REST
  (`GET /api/rooms/<slug>/messages/?after=N`) while holding back live messages
  until the hole is filled;
- give every send a `client_id` and resend unacknowledged sends with the same
  `client_id` after reconnecting (the server stores each one once);
- reconnect with exponential backoff and jitter, trying the next server URL
  each time, except after 4401 (not authenticated) or 4403 (deactivated).

It also drops repeats by seq, but records them (and any gap) so tests can
assert there were none: the server promises neither happens.

    client = ChatClient(["ws://127.0.0.1:8001/ws/chat/"], token, rooms={"lobby": 0})
    await client.start()
    message = await client.send("lobby", "hello")   # returns the acked message
    client.rooms["lobby"].messages                    # everything received, in seq order
    await client.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

logger = logging.getLogger(__name__)

# The server tells the client not to come back: reconnecting cannot help.
NO_RECONNECT = frozenset({4401, 4403})
# Send errors worth retrying with the same client_id; any other code is final.
RETRYABLE = frozenset({"unavailable", "rate_limited", "not_joined"})
REST_PAGE = 200

Frame = dict[str, Any]


class ChatClientError(Exception):
    """Base class of the client's errors."""


class FatalCloseError(ChatClientError):
    """The server closed with a code after which the client must not reconnect."""

    def __init__(self, code: int) -> None:
        super().__init__(f"server closed the socket with {code}; not reconnecting")
        self.code = code


class SendFailedError(ChatClientError):
    """The server refused a send for a reason a retry cannot fix (e.g. too_long, forbidden)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


@dataclass
class RoomState:
    """What this client holds of one room."""

    slug: str
    # Last seq received in order; None until the first join tells us where "now" is.
    last_seq: int | None
    messages: list[Frame] = field(default_factory=list)
    duplicates: list[Frame] = field(default_factory=list)
    gaps: list[tuple[int, int]] = field(default_factory=list)
    joined: bool = False
    error: str | None = None
    # While a REST backfill runs: the seq it must reach, and live messages held behind it.
    backfill_to: int | None = None
    held: list[Frame] = field(default_factory=list)
    backfill: asyncio.Task[None] | None = None
    join_attempts: int = 0


@dataclass
class _Pending:
    room: str
    body: str
    client_id: str
    future: asyncio.Future[Frame]
    inflight: bool = False
    attempts: int = 0
    reply_to: int | None = None
    attachments: tuple[int, ...] = ()


class ChatClient:
    """One websocket (at a time) to one of `urls`, multiplexing `rooms`."""

    def __init__(
        self,
        urls: str | Sequence[str],
        token: str,
        *,
        rooms: Mapping[str, int | None] | Iterable[str] = (),
        on_message: Callable[[Frame], None] | None = None,
        on_frame: Callable[[Frame], None] | None = None,
        on_reaction: Callable[[Frame], None] | None = None,
        on_mention: Callable[[Frame], None] | None = None,
        keep_history: bool = True,
        backoff: tuple[float, float] = (0.1, 5.0),
        ping_interval: float = 30.0,
        open_timeout: float = 5.0,
    ) -> None:
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        self.token = token
        initial = rooms.items() if isinstance(rooms, Mapping) else ((slug, None) for slug in rooms)
        self.rooms: dict[str, RoomState] = {slug: RoomState(slug, after) for slug, after in initial}
        self.on_message = on_message
        self.on_frame = on_frame
        self.on_reaction = on_reaction
        # message id -> emoji -> count, from the `reaction` events this client heard.
        self.reactions: dict[int, dict[str, int]] = {}
        self.on_mention = on_mention
        # `mention` events (`{"type", "room", "message"}`), oldest first: they reach every
        # socket of the mentioned user, whatever rooms it joined; the channel layer may drop
        # one (never repaired): GET /api/mentions/ is the complete list.
        self.mentions: list[Frame] = []
        self.keep_history = keep_history
        self.backoff = backoff
        self.ping_interval = ping_interval
        self.open_timeout = open_timeout
        self.acked: dict[str, Frame] = {}
        self.errors: list[Frame] = []
        # Close code of each lost connection (None: it never opened or died without one).
        self.closes: list[int | None] = []
        self.connections = 0
        self.fatal: int | None = None
        self._pending: dict[str, _Pending] = {}
        self._refs: dict[str, str] = {}
        self._ref_counter = itertools.count(1)
        self._url_index = 0
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False

    # --- public API -----------------------------------------------------------

    async def start(self) -> None:
        """Start connecting in the background; see `wait_ready`."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
            self._task.add_done_callback(self._check_run)

    @staticmethod
    def _check_run(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.error("chat client stopped by an error", exc_info=task.exception())

    async def stop(self) -> None:
        """Close the socket and stop reconnecting; unacknowledged sends are cancelled."""
        self._stopping = True
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._tasks):
            task.cancel()
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.cancel()

    async def wait_ready(self, within: float = 10.0) -> None:
        """Wait until every room is joined on the current connection."""
        await self.wait_until(lambda: self._ws is not None and all(r.joined for r in self.rooms.values()), within)

    async def wait_for_seq(self, room: str, seq: int, within: float = 10.0) -> None:
        """Wait until this client holds `room` up to `seq`, in order."""
        state = self.rooms[room]
        await self.wait_until(lambda: state.last_seq is not None and state.last_seq >= seq, within)

    async def wait_until(self, predicate: Callable[[], bool], within: float) -> None:
        deadline = time.monotonic() + within
        while not predicate():
            if self.fatal is not None:
                raise FatalCloseError(self.fatal)
            if time.monotonic() > deadline:
                raise TimeoutError("condition not reached in time")
            await asyncio.sleep(0.02)

    async def send(
        self,
        room: str,
        body: str,
        *,
        client_id: str | None = None,
        reply_to: int | None = None,
        attachments: Sequence[int] = (),
    ) -> Frame:
        """Send a message and return it once acknowledged (stored), retrying across reconnects.

        The same `client_id` is reused for every attempt, so the server stores the
        message once however often it is resent. Raises SendFailedError for a final
        refusal and FatalCloseError if the server shut the client out. `reply_to`
        is the id of a message in the same room this one answers; `attachments`
        are ids from `upload` (then `body` may be "").
        """
        if self.fatal is not None:
            raise FatalCloseError(self.fatal)
        if room not in self.rooms:
            raise ChatClientError(f"join {room!r} first")
        client_id = client_id or uuid.uuid4().hex
        pending = self._pending.get(client_id)
        if pending is None:
            future: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
            pending = self._pending[client_id] = _Pending(
                room, body, client_id, future, reply_to=reply_to, attachments=tuple(attachments)
            )
            await self._write_send(pending)
        return await asyncio.shield(pending.future)

    async def react(self, room: str, message_id: int, emoji: str, *, on: bool = True) -> str:
        """Add (or with `on=False` remove) a reaction; returns the frame's `ref`.

        The server answers nothing on success: every socket in the room, this one
        included, gets a `reaction` event (see `reactions` and `on_reaction`). A
        refusal arrives as an `error` with this ref, kept in `errors`. Not
        retried across reconnects: reactions are idempotent, so call it again.
        """
        state = self.rooms.get(room)
        if state is None or not state.joined or self._ws is None:
            raise ChatClientError(f"not joined to {room!r}")
        ref = f"react:{next(self._ref_counter)}"
        frame = {"type": "react", "room": room, "message_id": message_id, "emoji": emoji, "on": on, "ref": ref}
        await self._ws.send(json.dumps(frame))
        return ref

    @property
    def unacknowledged(self) -> list[str]:
        """client_ids of sends not acknowledged yet."""
        return list(self._pending)

    async def join(self, room: str, *, after: int | None = None) -> None:
        """Add a room (joined now if connected, and on every reconnect)."""
        if room not in self.rooms:
            self.rooms[room] = RoomState(room, after)
            if self._ws is not None:
                await self._send_join(self._ws, self.rooms[room])

    # --- connection loop ------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        while not self._stopping:
            url = self.urls[self._url_index % len(self.urls)]
            code: int | None = None
            opened: float | None = None
            try:
                async with connect(
                    url,
                    additional_headers={"Authorization": f"Token {self.token}"},
                    proxy=None,
                    open_timeout=self.open_timeout,
                    # Protocol pings notice a half-open connection from this side.
                    ping_interval=20,
                    ping_timeout=20,
                    max_size=2**20,
                ) as ws:
                    self._ws = ws
                    self.connections += 1
                    opened = time.monotonic()
                    pinger = self._spawn(self._ping_loop(ws))
                    try:
                        for state in self.rooms.values():
                            await self._send_join(ws, state)
                        async for raw in ws:
                            await self._handle(json.loads(raw))
                    finally:
                        pinger.cancel()
                    code = ws.close_code
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else None
            except (OSError, InvalidHandshake, TimeoutError) as exc:
                logger.info("connecting to %s failed: %s", url, exc)
            finally:
                self._lost()
            self.closes.append(code)
            if code in NO_RECONNECT:
                self._shut_out(code)
                return
            if self._stopping:
                return
            # A connection that lived a while was healthy: start backing off afresh.
            if opened is not None and time.monotonic() - opened > 2.0:
                attempt = 0
            self._url_index += 1
            low, high = self.backoff
            delay = min(high, low * 2**attempt) * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not crypto
            attempt += 1
            await asyncio.sleep(delay)

    def _lost(self) -> None:
        self._ws = None
        for state in self.rooms.values():
            state.joined = False
            # The rejoin replays from last_seq, which covers both the hole and the held messages.
            if state.backfill is not None:
                state.backfill.cancel()
                state.backfill = None
            state.backfill_to = None
            state.held.clear()
        for pending in self._pending.values():
            pending.inflight = False

    def _shut_out(self, code: int) -> None:
        self.fatal = code
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(FatalCloseError(code))
        self._pending.clear()

    async def _ping_loop(self, ws: ClientConnection) -> None:
        # An application ping counts as activity for the server's idle timeout.
        while True:
            await asyncio.sleep(self.ping_interval)
            await ws.send(json.dumps({"type": "ping"}))

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _send_join(self, ws: ClientConnection, state: RoomState) -> None:
        if state.error is not None:
            return
        frame: Frame = {"type": "join", "room": state.slug, "ref": f"join:{state.slug}"}
        if state.last_seq is not None:
            frame["after"] = state.last_seq
        with contextlib.suppress(ConnectionClosed):
            await ws.send(json.dumps(frame))

    async def _write_send(self, pending: _Pending) -> None:
        ws = self._ws
        state = self.rooms[pending.room]
        if ws is None or not state.joined or pending.inflight or pending.future.done():
            return  # resent when the room is (re)joined
        ref = f"s{next(self._ref_counter)}"
        self._refs[ref] = pending.client_id
        pending.inflight = True
        pending.attempts += 1
        frame: Frame = {"type": "send", "room": pending.room, "body": pending.body, "client_id": pending.client_id}
        if pending.reply_to is not None:
            frame["reply_to"] = pending.reply_to
        if pending.attachments:
            frame["attachments"] = list(pending.attachments)
        try:
            await ws.send(json.dumps({**frame, "ref": ref}))
        except ConnectionClosed:
            pending.inflight = False

    async def _retry_later(self, pending: _Pending, delay: float) -> None:
        await asyncio.sleep(delay)
        if self._pending.get(pending.client_id) is pending:
            await self._write_send(pending)

    # --- frames from the server ------------------------------------------------

    async def _handle(self, frame: Frame) -> None:
        kind = frame.get("type")
        if kind == "message":
            self._on_message(frame["message"])
        elif kind == "joined":
            await self._on_joined(frame)
        elif kind == "ack":
            self._on_ack(frame)
        elif kind == "error":
            await self._on_error(frame)
        elif kind == "reaction":
            self._on_reaction(frame)
        elif kind == "mention":
            self._on_mention(frame)
        if self.on_frame is not None:
            self.on_frame(frame)

    def _on_mention(self, frame: Frame) -> None:
        if self.keep_history:
            self.mentions.append(frame)
        if self.on_mention is not None:
            self.on_mention(frame)

    def _on_reaction(self, frame: Frame) -> None:
        counts = self.reactions.setdefault(frame["message_id"], {})
        if frame["count"]:
            counts[frame["emoji"]] = frame["count"]
        else:
            counts.pop(frame["emoji"], None)
        if self.on_reaction is not None:
            self.on_reaction(frame)

    def _on_message(self, message: Frame) -> None:
        state = self.rooms.get(message["room"])
        if state is None:
            return
        if state.backfill_to is not None and message["seq"] > state.backfill_to:
            state.held.append(message)
        else:
            self._accept(state, message)

    def _accept(self, state: RoomState, message: Frame) -> None:
        seq = message["seq"]
        if state.last_seq is not None and seq <= state.last_seq:
            state.duplicates.append(message)
            return
        if state.last_seq is not None and seq != state.last_seq + 1:
            state.gaps.append((state.last_seq + 1, seq))
        state.last_seq = seq
        if self.keep_history:
            state.messages.append(message)
        if self.on_message is not None:
            self.on_message(message)

    async def _on_joined(self, frame: Frame) -> None:
        state = self.rooms.get(frame["room"])
        if state is None:
            return
        state.joined = True
        state.join_attempts = 0
        server_last = frame["last_seq"]
        if state.last_seq is None:
            state.last_seq = server_last
        elif state.last_seq < server_last and state.backfill is None:
            # recovered: false. Live messages continue from server_last + 1;
            # what lies between comes over REST.
            state.backfill_to = server_last
            state.backfill = self._spawn(self._backfill(state))
        for pending in list(self._pending.values()):
            if pending.room == state.slug:
                await self._write_send(pending)

    def _on_ack(self, frame: Frame) -> None:
        client_id = self._refs.pop(frame.get("ref", ""), None) or frame["message"].get("client_id")
        pending = self._pending.pop(client_id, None) if client_id else None
        if client_id:
            self.acked[client_id] = frame["message"]
        if pending is not None and not pending.future.done():
            pending.future.set_result(frame["message"])

    async def _on_error(self, frame: Frame) -> None:
        self.errors.append(frame)
        ref = frame.get("ref") or ""
        code = frame.get("code", "")
        if ref.startswith("react:") and code != "forbidden":
            return  # a refused reaction: nothing to retry or resend
        if ref.startswith("join:"):
            state = self.rooms.get(ref[5:])
            if state is None:
                return
            if code in ("unavailable", "rate_limited"):
                state.join_attempts += 1
                self._spawn(self._rejoin_later(state, min(5.0, 0.2 * 2**state.join_attempts)))
            else:
                self._room_lost(state, code, frame.get("detail", ""))
            return
        client_id = self._refs.pop(ref, None)
        pending = self._pending.get(client_id) if client_id else None
        if pending is None:
            # Not a reply to a send: a ban cuts this socket off the room.
            room = self.rooms.get(frame.get("room") or "")
            if room is not None and code == "forbidden":
                self._room_lost(room, code, frame.get("detail", ""))
            return
        pending.inflight = False
        if code not in RETRYABLE:
            del self._pending[pending.client_id]
            pending.future.set_exception(SendFailedError(code, frame.get("detail", "")))
        elif code == "unavailable":
            self._spawn(self._retry_later(pending, min(5.0, 0.2 * 2**pending.attempts)))
        elif code == "rate_limited":
            self._spawn(self._retry_later(pending, float(frame.get("retry_after", 1))))
        # not_joined: resent by _on_joined once the room is joined again.

    def _room_lost(self, state: RoomState, code: str, detail: str) -> None:
        state.error = code
        state.joined = False
        for pending in [p for p in self._pending.values() if p.room == state.slug]:
            del self._pending[pending.client_id]
            pending.future.set_exception(SendFailedError(code, detail))

    async def _rejoin_later(self, state: RoomState, delay: float) -> None:
        await asyncio.sleep(delay)
        ws = self._ws
        if ws is not None and not state.joined:
            await self._send_join(ws, state)

    # --- REST backfill ----------------------------------------------------------

    async def _backfill(self, state: RoomState) -> None:
        """Page `after=last_seq` over REST up to `backfill_to`, then release the held live messages."""
        target = state.backfill_to
        assert target is not None
        attempt = 0
        try:
            while state.last_seq is not None and state.last_seq < target:
                try:
                    page = await asyncio.to_thread(self._rest_page, state.slug, state.last_seq)
                except (OSError, ValueError) as exc:
                    attempt += 1
                    logger.info("history page for %s failed (%s); retrying", state.slug, exc)
                    await asyncio.sleep(min(5.0, 0.2 * 2**attempt))
                    continue
                results = [m for m in page.get("results", []) if m["seq"] <= target]
                if not results:
                    break
                for message in results:
                    self._accept(state, message)
            state.backfill_to = None
            held, state.held = state.held, []
            for message in sorted(held, key=lambda m: m["seq"]):
                self._accept(state, message)
        finally:
            state.backfill = None

    def _http_base(self) -> str:
        url = self.urls[self._url_index % len(self.urls)]
        parts = urllib.parse.urlsplit(url)
        scheme = "https" if parts.scheme == "wss" else "http"
        return f"{scheme}://{parts.netloc}"

    async def upload(self, room: str, name: str, data: bytes, content_type: str = "application/octet-stream") -> Frame:
        """Upload one file to `room` (POST /api/rooms/<room>/attachments/); returns the attachment.

        Pass its `id` in `send(..., attachments=[...])`. A refusal (too_large,
        forbidden, rate_limited...) raises SendFailedError with the server's code.
        """
        return await asyncio.to_thread(self._upload, room, name, data, content_type)

    async def download(self, attachment: Frame) -> bytes:
        """The bytes of an attachment (its `url`, with this client's token)."""
        return await asyncio.to_thread(self._download, str(attachment["url"]))

    def _upload(self, room: str, name: str, data: bytes, content_type: str) -> Frame:
        boundary = uuid.uuid4().hex
        quoted = name.replace("\\", "_").replace('"', "_").replace("\r", "_").replace("\n", "_")
        body = b"".join(
            [
                f"--{boundary}\r\n".encode(),
                f'Content-Disposition: form-data; name="file"; filename="{quoted}"\r\n'.encode(),
                f"Content-Type: {content_type}\r\n\r\n".encode(),
                data,
                f"\r\n--{boundary}--\r\n".encode(),
            ]
        )
        request = urllib.request.Request(  # noqa: S310 - the URL is built from our own ws:// or wss:// base
            f"{self._http_base()}/api/rooms/{urllib.parse.quote(room)}/attachments/",
            data=body,
            method="POST",
            headers={
                "Authorization": f"Token {self.token}",
                "Accept": "application/json",
                "Content-Type": f"multipart/form-data; boundary={boundary}",
            },
        )
        return self._rest_json(request)

    def _download(self, url: str) -> bytes:
        request = urllib.request.Request(  # noqa: S310 - a path on our own server
            urllib.parse.urljoin(self._http_base(), url), headers={"Authorization": f"Token {self.token}"}
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=30) as response:
                content: bytes = response.read()
        except urllib.error.HTTPError as exc:
            raise _refusal(exc) from None
        return content

    def _rest_json(self, request: urllib.request.Request) -> Frame:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=30) as response:
                data: Frame = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise _refusal(exc) from None
        return data

    def _rest_page(self, slug: str, after: int) -> Frame:
        query = urllib.parse.urlencode({"after": after, "limit": REST_PAGE})
        request = urllib.request.Request(  # noqa: S310 - the URL is built from our own ws:// or wss:// base
            f"{self._http_base()}/api/rooms/{slug}/messages/?{query}",
            headers={"Authorization": f"Token {self.token}", "Accept": "application/json"},
        )
        # No proxies: the server is addressed directly, as the websocket is.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=10) as response:
            data: Frame = json.loads(response.read())
        return data


def _refusal(exc: urllib.error.HTTPError) -> SendFailedError:
    """The API's `{"detail", "code"}` error as a SendFailedError."""
    try:
        error = json.loads(exc.read())
        return SendFailedError(str(error["code"]), str(error["detail"]))
    except (ValueError, KeyError, TypeError):
        return SendFailedError(f"http_{exc.code}", exc.reason or "")

"""The load generator: asyncio `websockets` clients driving one server.

Run by `bench/run.py` (pinned to its own core), one scenario per process:

    python bench/loadgen.py '<json config>'

and prints one JSON object with the measurements on its last stdout line.

Targets speak one of two wire protocols:

- `chat`: this project's contract. Token in the `Authorization` header, a
  `join` per room, `send` with a `client_id`; an `ack` means committed; live
  messages arrive as `message` frames.
- `relay`: the Channels tutorial's `/ws/chat/<room>/`, frames `{"message": text}`
  broadcast to the room, the sender included. Both references speak it; the
  sender hearing its own message back is its acknowledgement (the tutorial
  design saves before it broadcasts).

Every message body starts with a key `<room>.<n>`; the generator remembers
when each was due, so a listener's receipt gives its end-to-end latency,
and per-listener sets reveal losses and duplicates.

Modes:
- `fanout`: open loop. One sender per room sends at a fixed rate on an
  absolute schedule (a slow server does not slow the senders down, so
  latency includes queueing); listeners record every delivery.
- `saturate`: closed loop. N senders, each in its own room, send the next
  message as soon as the previous one is acknowledged.
- `idle`: opens N sockets in batches (from several 127.0.0.x source
  addresses), checks each is authenticated (ping/pong on `chat`), then reads
  the server's RSS.

Every loop is bounded by the configured duration and timeouts.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import resource
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

PAD = "x" * 80  # a body of ~100 characters, like a chat line


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def latency_summary(values: list[float]) -> dict[str, float | None]:
    """Milliseconds."""

    def ms(v: float | None) -> float | None:
        return None if v is None else round(v * 1000, 3)

    return {
        "p50_ms": ms(percentile(values, 0.50)),
        "p99_ms": ms(percentile(values, 0.99)),
        "max_ms": ms(max(values) if values else None),
    }


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process (all threads), from /proc."""
    if not pid:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


class CpuMeter:
    """CPU used by the server and by this generator over a window, in % of one core."""

    def __init__(self, server_pid: int | None) -> None:
        self.pid = server_pid
        self.wall = time.perf_counter()
        self.server = cpu_seconds(server_pid)
        t = os.times()
        self.own = t.user + t.system

    def server_seconds(self) -> float | None:
        """Server CPU seconds used since the meter started."""
        return cpu_seconds(self.pid) - self.server if self.pid else None

    def result(self) -> dict[str, float | None]:
        wall = time.perf_counter() - self.wall
        t = os.times()
        used = self.server_seconds()
        return {
            "server_cpu_pct": round(100 * used / wall, 1) if used is not None else None,
            "server_cpu_s": round(used, 3) if used is not None else None,
            "loadgen_cpu_pct": round(100 * (t.user + t.system - self.own) / wall, 1),
        }


def micros_per(cpu_s: float | None, count: int) -> float | None:
    """Server CPU microseconds per unit of work (a delivery, an acknowledged send)."""
    if cpu_s is None or not count:
        return None
    return round(cpu_s / count * 1e6, 1)


# --- protocols ---------------------------------------------------------------


class Protocol:
    """How to reach a room and how to read frames, per wire protocol."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.base = cfg["url"].rstrip("/")
        self.tokens: list[str] = cfg.get("tokens") or []
        self.origin = cfg.get("origin", "http://127.0.0.1")
        # Off unless the scenario measures permessage-deflate ("deflate").
        self.compression = cfg.get("compression")
        self._counter = itertools.count()

    async def open(self, room: str | None, index: int, local_addr: str | None = None) -> ClientConnection:
        raise NotImplementedError

    def send_frame(self, room: str, body: str) -> str:
        raise NotImplementedError

    def parse(self, raw: str | bytes) -> tuple[str, str | None]:
        """Return (kind, body) with kind 'message', 'ack' or 'other'."""
        raise NotImplementedError

    def ack_is_own_message(self) -> bool:
        return False

    async def _connect(self, url: str, headers: dict[str, str], local_addr: str | None) -> ClientConnection:
        kwargs: dict[str, Any] = {}
        if local_addr:
            kwargs["local_addr"] = (local_addr, 0)
        return await connect(
            url,
            additional_headers=headers,
            origin=self.origin,  # type: ignore[arg-type]
            compression=self.compression,
            max_size=2**20,
            ping_interval=None,
            open_timeout=30,
            close_timeout=2,
            max_queue=None,
            **kwargs,
        )


class ChatProtocol(Protocol):
    async def open(self, room: str | None, index: int, local_addr: str | None = None) -> ClientConnection:
        headers = {"Authorization": f"Token {self.tokens[index % len(self.tokens)]}"}
        ws = await self._connect(f"{self.base}/ws/chat/", headers, local_addr)
        if room is None:
            # Authenticated? An unauthenticated socket is closed with 4401
            # before any frame, so a pong proves the token was accepted.
            await ws.send('{"type":"ping"}')
            await self._expect(ws, "pong")
            return ws
        await ws.send(orjson.dumps({"type": "join", "room": room}).decode())
        await self._expect(ws, "joined")
        return ws

    @staticmethod
    async def _expect(ws: ClientConnection, kind: str) -> None:
        async with asyncio.timeout(30):
            while True:
                frame = orjson.loads(await ws.recv())
                if frame.get("type") == kind:
                    return
                if frame.get("type") == "error":
                    raise RuntimeError(f"server error while waiting for {kind}: {frame}")

    def send_frame(self, room: str, body: str) -> str:
        return orjson.dumps(
            {"type": "send", "room": room, "body": body, "client_id": f"c{next(self._counter)}"}
        ).decode()

    def parse(self, raw: str | bytes) -> tuple[str, str | None]:
        frame = orjson.loads(raw)
        kind = frame.get("type")
        if kind == "message" or kind == "ack":
            return kind, frame["message"]["body"]
        if kind == "error":
            return "error", json.dumps(frame)
        return "other", None


class RelayProtocol(Protocol):
    async def open(self, room: str | None, index: int, local_addr: str | None = None) -> ClientConnection:
        return await self._connect(f"{self.base}/ws/chat/{room or 'idle'}/", {}, local_addr)

    def send_frame(self, room: str, body: str) -> str:
        return orjson.dumps({"message": body}).decode()

    def parse(self, raw: str | bytes) -> tuple[str, str | None]:
        frame = orjson.loads(raw)
        return "message", frame.get("message")

    def ack_is_own_message(self) -> bool:
        return True


def protocol_for(cfg: dict[str, Any]) -> Protocol:
    return ChatProtocol(cfg) if cfg["protocol"] == "chat" else RelayProtocol(cfg)


async def open_many(
    proto: Protocol, specs: list[tuple[str | None, int]], batch: int, local_addrs: list[str] | None = None
) -> tuple[list[ClientConnection | None], list[str]]:
    """Open sockets `batch` at a time; failures are returned, not raised."""
    sockets: list[ClientConnection | None] = [None] * len(specs)
    errors: list[str] = []

    async def one(i: int) -> None:
        room, index = specs[i]
        addr = local_addrs[i % len(local_addrs)] if local_addrs else None
        try:
            sockets[i] = await proto.open(room, index, addr)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}"[:200])

    for start in range(0, len(specs), batch):
        await asyncio.gather(*(one(i) for i in range(start, min(start + batch, len(specs)))))
    return sockets, errors


async def close_all(sockets: list[ClientConnection | None]) -> None:
    for start in range(0, len(sockets), 500):
        chunk = [s for s in sockets[start : start + 500] if s is not None]
        await asyncio.gather(*(s.close() for s in chunk), return_exceptions=True)


# --- fan-out -------------------------------------------------------------------


@dataclass
class FanoutState:
    due: dict[str, float] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    deliveries: int = 0
    in_window: int = 0
    duplicates: int = 0
    errors: list[str] = field(default_factory=list)
    window_end: float = 0.0
    frames: int = 0


async def listen(ws: ClientConnection, proto: Protocol, state: FanoutState, seen: set[str]) -> None:
    try:
        async for raw in ws:
            now = time.perf_counter()
            state.frames += 1
            kind, body = proto.parse(raw)
            if kind == "error":
                state.errors.append(body or "")
                continue
            if kind != "message" or body is None:
                continue
            key = body.split(" ", 1)[0]
            due = state.due.get(key)
            if due is None:
                continue
            if key in seen:
                state.duplicates += 1
                continue
            seen.add(key)
            state.deliveries += 1
            if now <= state.window_end:
                state.in_window += 1
            state.latencies.append(now - due)
    except ConnectionClosed:
        pass


async def fanout(cfg: dict[str, Any]) -> dict[str, Any]:
    proto = protocol_for(cfg)
    rooms: list[str] = cfg["rooms"]
    listeners_per_room: int = cfg["listeners"]
    rate: float = cfg["rate"]
    duration: float = cfg["duration"]
    per_room = int(rate * duration)
    state = FanoutState()

    specs: list[tuple[str | None, int]] = []
    for r, room in enumerate(rooms):
        for j in range(listeners_per_room):
            specs.append((room, r * listeners_per_room + j))
    listeners, errors = await open_many(proto, specs, batch=50)
    senders, sender_errors = await open_many(proto, [(room, len(specs) + r) for r, room in enumerate(rooms)], batch=50)
    errors += sender_errors
    if errors:
        await close_all(listeners + senders)
        return {"error": f"{len(errors)} sockets failed to open", "sample": errors[:3]}

    seen_sets = [set() for _ in listeners]  # type: list[set[str]]
    tasks = [asyncio.create_task(listen(ws, proto, state, seen)) for ws, seen in zip(listeners, seen_sets, strict=True)]
    acks: list[float] = []
    sent = 0

    async def sender_reader(ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                kind, body = proto.parse(raw)
                if kind == "error":
                    state.errors.append(body or "")
                    continue
                ack = kind == "ack" or (proto.ack_is_own_message() and kind == "message")
                if ack and body:
                    due = state.due.get(body.split(" ", 1)[0])
                    if due is not None:
                        acks.append(time.perf_counter() - due)
        except ConnectionClosed:
            pass

    readers = [asyncio.create_task(sender_reader(ws)) for ws in senders if ws is not None]
    # Joins make presence traffic (each join tells the whole room); start
    # sending only once listeners have heard nothing for a second, so the
    # figures are about messages, not the join storm (bounded at 60 s).
    settle_started = time.perf_counter()
    quiet_since, last_frames = time.perf_counter(), -1
    while time.perf_counter() - settle_started < 60:
        await asyncio.sleep(0.1)
        if state.frames != last_frames:
            quiet_since, last_frames = time.perf_counter(), state.frames
        elif time.perf_counter() - quiet_since >= 1.0:
            break
    settle_s = time.perf_counter() - settle_started
    state.frames = 0

    start = time.perf_counter() + 0.05
    state.window_end = start + duration
    meter = CpuMeter(cfg.get("server_pid"))

    async def send_loop(r: int, room: str, ws: ClientConnection) -> None:
        nonlocal sent
        phase = r / (len(rooms) * rate)  # spread rooms across the interval
        for n in range(per_room):
            due = start + phase + n / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            key = f"{r}.{n}"
            state.due[key] = due
            try:
                await ws.send(proto.send_frame(room, f"{key} {PAD}"))
            except ConnectionClosed:
                state.errors.append("sender connection closed")
                return
            sent += 1

    await asyncio.gather(*(send_loop(r, room, ws) for r, (room, ws) in enumerate(zip(rooms, senders, strict=True))))
    cpu = meter.result()
    expected = sent * listeners_per_room
    drain_deadline = time.perf_counter() + cfg.get("drain", 10.0)
    while state.deliveries < expected and time.perf_counter() < drain_deadline:
        await asyncio.sleep(0.05)
    elapsed_until_done = time.perf_counter() - start
    # CPU from the first send until everything arrived (or the drain ended),
    # so a server that works through a backlog after the window pays for it.
    cpu_until_done = meter.server_seconds()
    for t in tasks + readers:
        t.cancel()
    await close_all(listeners + senders)
    offered = rate * len(rooms) * listeners_per_room
    return {
        "sent": sent,
        "expected_deliveries": expected,
        "delivered": state.deliveries,
        "lost": expected - state.deliveries,
        "duplicates": state.duplicates,
        "offered_per_s": offered,
        "deliveries_per_s": round(state.in_window / duration, 1),
        "delivered_fraction_in_window": round(state.in_window / (offered * duration), 4) if offered else None,
        "completed_after_s": round(elapsed_until_done, 2),
        "settle_s": round(settle_s, 2),
        "other_frames": state.frames - state.deliveries - state.duplicates,
        **latency_summary(state.latencies),
        "ack": latency_summary(acks),
        "errors": len(state.errors),
        "error_sample": state.errors[:3],
        **cpu,
        "server_cpu_s_until_done": round(cpu_until_done, 3) if cpu_until_done is not None else None,
        "server_us_per_delivery": micros_per(cpu_until_done, state.deliveries),
    }


# --- saturation ----------------------------------------------------------------


async def saturate(cfg: dict[str, Any]) -> dict[str, Any]:
    proto = protocol_for(cfg)
    rooms: list[str] = cfg["rooms"]
    duration: float = cfg["duration"]
    warmup: float = cfg.get("warmup", 1.0)
    sockets, errors = await open_many(proto, [(room, i) for i, room in enumerate(rooms)], batch=50)
    if errors:
        await close_all(sockets)
        return {"error": f"{len(errors)} sockets failed to open", "sample": errors[:3]}
    await asyncio.sleep(0.5)
    start = time.perf_counter()
    measure_from = start + warmup
    deadline = measure_from + duration
    counted = 0
    latencies: list[float] = []
    failures: list[str] = []
    meter: CpuMeter | None = None
    cpu: dict[str, float | None] = {}

    async def start_meter() -> None:
        # The same window as the count: from the warm-up's end to the deadline.
        nonlocal meter, cpu
        await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
        meter = CpuMeter(cfg.get("server_pid"))
        await asyncio.sleep(max(0.0, deadline - time.perf_counter()))
        cpu = meter.result()

    meter_task = asyncio.create_task(start_meter())

    async def sender(i: int, room: str, ws: ClientConnection) -> None:
        nonlocal counted
        for n in itertools.count():
            now = time.perf_counter()
            if now >= deadline:
                return
            key = f"{i}.{n}"
            try:
                await ws.send(proto.send_frame(room, f"{key} {PAD}"))
                async with asyncio.timeout(max(1.0, deadline - now + 5)):
                    while True:
                        kind, body = proto.parse(await ws.recv())
                        if kind == "error":
                            failures.append(body or "")
                            return
                        acked = kind == "ack" or (proto.ack_is_own_message() and kind == "message")
                        if acked and body and body.split(" ", 1)[0] == key:
                            break
            except (TimeoutError, ConnectionClosed) as exc:
                failures.append(type(exc).__name__)
                return
            done = time.perf_counter()
            if measure_from <= done <= deadline:
                counted += 1
                latencies.append(done - now)

    await asyncio.gather(*(sender(i, room, ws) for i, (room, ws) in enumerate(zip(rooms, sockets, strict=True))))
    await meter_task
    await close_all(sockets)
    return {
        **cpu,
        "server_us_per_ack": micros_per(cpu.get("server_cpu_s"), counted),
        "senders": len(rooms),
        "acked": counted,
        "acked_per_s": round(counted / duration, 1),
        **latency_summary(latencies),
        "failures": len(failures),
        "failure_sample": failures[:3],
    }


# --- idle sockets ----------------------------------------------------------------


async def idle(cfg: dict[str, Any]) -> dict[str, Any]:
    proto = protocol_for(cfg)
    count: int = cfg["count"]
    pid: int = cfg["server_pid"]
    # Several source addresses: 10,000+ sockets to one port from one address
    # would eat most of the ephemeral port range.
    local_addrs = [f"127.0.0.{i}" for i in range(2, 10)]
    warm, _ = await open_many(proto, [(None, 0)], batch=1, local_addrs=local_addrs)
    await close_all(warm)
    await asyncio.sleep(1.0)
    before = rss_kib(pid)
    started = time.perf_counter()
    sockets, errors = await open_many(
        proto, [(None, i) for i in range(count)], batch=cfg.get("batch", 200), local_addrs=local_addrs
    )
    open_s = time.perf_counter() - started
    await asyncio.sleep(2.0)
    held = sum(1 for s in sockets if s is not None and s.state.name == "OPEN")
    after = rss_kib(pid)
    # Opened, then closed by the server before the count: by which close code.
    dropped = Counter(str(s.close_code) for s in sockets if s is not None and s.state.name != "OPEN")
    await close_all(sockets)
    return {
        "requested": count,
        "held": held,
        "failed": len(errors),
        "error_sample": errors[:3],
        "closed_by_server": dict(dropped),
        "open_seconds": round(open_s, 2),
        "rss_before_mib": round(before / 1024, 1),
        "rss_after_mib": round(after / 1024, 1),
        "kib_per_socket": round((after - before) / held, 2) if held else None,
    }


def main() -> None:
    cfg = json.loads(sys.argv[1])
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    mode = {"fanout": fanout, "saturate": saturate, "idle": idle}[cfg["mode"]]
    try:
        result = asyncio.run(asyncio.wait_for(mode(cfg), timeout=cfg.get("timeout", 600)))
    except Exception as exc:
        result = {"error": f"{type(exc).__name__}: {exc}"[:500]}
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    os._exit(0)  # skip slow teardown of thousands of transports


if __name__ == "__main__":
    main()

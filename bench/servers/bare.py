"""Reference (2): the bare limit for Python on this machine.

A plain asyncio `websockets` server, no Django, no database, no channel layer:
`/ws/chat/<room>/` joins a room, and every text frame `{"message": ...}` is
relayed unchanged to everyone in that room (the sender included) with
`websockets.broadcast`, the same wire protocol as the tutorial design, so the
same load-generator code drives both.

    python bench/servers/bare.py --port 9101
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections import defaultdict

from websockets.asyncio.server import ServerConnection, broadcast, serve

rooms: dict[str, set[ServerConnection]] = defaultdict(set)


async def handler(ws: ServerConnection) -> None:
    path = ws.request.path if ws.request is not None else "/"
    parts = [p for p in path.split("/") if p]
    # /ws/chat/<room>/ as in the Channels tutorial.
    room = parts[2] if len(parts) >= 3 and parts[:2] == ["ws", "chat"] else "default"
    members = rooms[room]
    members.add(ws)
    try:
        async for frame in ws:
            if isinstance(frame, str):
                # Relayed as received: the payload already is {"message": ...}.
                broadcast(members, frame)
    finally:
        members.discard(ws)
        if not members:
            rooms.pop(room, None)


async def main(host: str, port: int) -> None:
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    # Same 64 KiB frame limit as the chat server; pings as daphne does them.
    async with serve(handler, host, port, max_size=64 * 1024, ping_interval=20, backlog=4096):
        await stop


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(main(args.host, args.port))

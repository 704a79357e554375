"""Serve config.asgi:application with uvicorn, with the project's settings in one place.

    .venv/bin/python -m config.serve --host 127.0.0.1 --port 8000
    .venv/bin/python -m config.serve --host 0.0.0.0 --port 8000 --workers 4   # needs REDIS_URL

Any other uvicorn option may follow and overrides the defaults below (the last
value of an option wins). `make run`, the benchmarks (`bench/run.py --server
uvicorn`), the integration tests (`CHAT_TEST_SERVER=uvicorn`) and the
production notes all start uvicorn through `OPTIONS`, so the websocket contract
holds the same way everywhere. The same flags work on the plain `uvicorn`
command line: `python -m config.serve --print-options` prints them.
"""

from __future__ import annotations

import argparse
import os
import sys

APPLICATION = "config.asgi:application"

# The contract's websocket message limit (settings.CHAT_MAX_FRAME_BYTES; a
# test keeps the two equal). Not read from settings so that starting the
# server does not import Django before uvicorn has set up its workers.
MAX_MESSAGE_BYTES = 64 * 1024

OPTIONS: list[str] = [
    # uvloop and httptools: the C event loop and HTTP parser, the reason to
    # run uvicorn at all (pinned in requirements/base.txt).
    "--loop",
    "uvloop",
    "--http",
    "httptools",
    # The `websockets` library's Sans-I/O protocol (uvicorn's default when
    # websockets is installed); measured against wsproto in docs/performance.md.
    "--ws",
    "websockets-sansio",
    # A larger message is refused by the protocol layer with close code 1009
    # before it is buffered in full, as the contract asks (uvicorn's default
    # is 16 MiB).
    "--ws-max-size",
    str(MAX_MESSAGE_BYTES),
    # Chat frames are ~300 bytes: compressing each costs CPU per socket and a
    # zlib context (~64 KiB) per socket, for little saved bandwidth. daphne
    # does not offer it either.
    "--ws-per-message-deflate",
    "false",
    # Like daphne's defaults: a ping every 20 s, and a peer that has not
    # answered within 30 s is dropped (half-open TCP), so presence goes offline.
    "--ws-ping-interval",
    "20",
    "--ws-ping-timeout",
    "30",
    # Channels' ProtocolTypeRouter has no lifespan handler: "auto" would log
    # a failed startup probe on every start.
    "--lifespan",
    "off",
    # X-Forwarded-Proto/-For from the TLS proxy, trusted only from the
    # addresses in FORWARDED_ALLOW_IPS (default 127.0.0.1,::1).
    "--proxy-headers",
    # On SIGTERM, open sockets get 1012 ("service restart") and the process
    # exits within this time, as daphne's application close timeout does.
    "--timeout-graceful-shutdown",
    "10",
]


def workers_requested(args: list[str]) -> int:
    """How many worker processes uvicorn would start for these arguments and the environment."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--workers", type=int)
    known, _ = parser.parse_known_args(args)
    if known.workers is not None:
        return int(known.workers)
    for name in ("UVICORN_WORKERS", "WEB_CONCURRENCY"):
        if os.environ.get(name):
            return int(os.environ[name])
    return 1


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--print-options" in args:
        print(" ".join([*OPTIONS, APPLICATION]))
        return
    if workers_requested(args) > 1 and not os.environ.get("REDIS_URL"):
        # Each worker would have its own in-memory channel layer and presence:
        # a message sent through one worker would never reach sockets on another.
        sys.exit("config.serve: several workers need REDIS_URL (the in-memory channel layer is per process)")
    from uvicorn.main import main as uvicorn_main

    uvicorn_main.main(args=[*OPTIONS, *args, APPLICATION], prog_name="python -m config.serve")


if __name__ == "__main__":
    main()

"""Before and after: key figures of two benchmark runs side by side.

    .venv/bin/python bench/compare.py bench/results/BEFORE.json bench/results/AFTER.json
    .venv/bin/python bench/compare.py bench/results/RUN.json   # one `--server both` run: uvicorn vs daphne

Absolute figures drift with the machine's load, so each run's ratio to its
own references (measured in the same run) is shown too; compare those.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def get(data: dict[str, Any], path: str) -> Any:
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def ratio(a: Any, b: Any) -> float | None:
    if isinstance(a, int | float) and isinstance(b, int | float) and b:
        return a / b
    return None


FIGURES = [
    ("saturation acked msgs/s", "saturation.chat.acked_per_s", "saturation.tutorial.acked_per_s", "tutorial"),
    ("saturation vs pgbench -c 2", "saturation.chat.acked_per_s", "saturation.pgbench_2.tps", "pgbench 2"),
    ("saturation ack p99 ms", "saturation.chat.p99_ms", "saturation.tutorial.p99_ms", "tutorial"),
    ("10x20@20 deliveries/s", "fanout_10x20_20.chat.deliveries_per_s", "fanout_10x20_20.bare.deliveries_per_s", "bare"),
    ("10x20@20 p99 ms", "fanout_10x20_20.chat.p99_ms", "fanout_10x20_20.tutorial.p99_ms", "tutorial"),
    ("10x20@20 undelivered", "fanout_10x20_20.chat.lost", "fanout_10x20_20.tutorial.lost", "tutorial"),
    ("10x20@20 server CPU %", "fanout_10x20_20.chat.server_cpu_pct", "fanout_10x20_20.bare.server_cpu_pct", "bare"),
    ("1x200@20 deliveries/s", "fanout_1x200_20.chat.deliveries_per_s", "fanout_1x200_20.bare.deliveries_per_s", "bare"),
    ("1x200@20 p99 ms", "fanout_1x200_20.chat.p99_ms", "fanout_1x200_20.tutorial.p99_ms", "tutorial"),
    ("10x20@2 p99 ms", "fanout_10x20_2.chat.p99_ms", "fanout_10x20_2.tutorial.p99_ms", "tutorial"),
    ("10x20@2 p99 ms vs bare", "fanout_10x20_2.chat.p99_ms", "fanout_10x20_2.bare.p99_ms", "bare"),
    ("1x1000@4 deliveries/s", "fanout_1x1000_4.chat.deliveries_per_s", "fanout_1x1000_4.bare.deliveries_per_s", "bare"),
    ("1x1000@4 p99 ms", "fanout_1x1000_4.chat.p99_ms", "fanout_1x1000_4.bare.p99_ms", "bare"),
    ("1x1000@4 undelivered", "fanout_1x1000_4.chat.lost", "fanout_1x1000_4.tutorial.lost", "tutorial"),
    (
        "saturation server CPU us/ack",
        "saturation.chat.server_us_per_ack",
        "saturation.tutorial_persistent.server_us_per_ack",
        "tutorial persistent",
    ),
    (
        "10x20@20 server CPU us/delivery",
        "fanout_10x20_20.chat.server_us_per_delivery",
        "fanout_10x20_20.bare.server_us_per_delivery",
        "bare",
    ),
    (
        "1x200@20 server CPU us/delivery",
        "fanout_1x200_20.chat.server_us_per_delivery",
        "fanout_1x200_20.bare.server_us_per_delivery",
        "bare",
    ),
    (
        "1x1000@4 server CPU us/delivery",
        "fanout_1x1000_4.chat.server_us_per_delivery",
        "fanout_1x1000_4.bare.server_us_per_delivery",
        "bare",
    ),
    ("history seq 1 p50 ms", "history.oldest.p50_ms", "history.newest.p50_ms", "newest page"),
    ("idle sockets held", "idle.chat.held", "idle.bare.held", "bare"),
    ("idle KiB/socket", "idle.chat.kib_per_socket", "idle.bare.kib_per_socket", "bare"),
]

# With `--server both`, the chat server's figures on its other ASGI server,
# against the same run's figures on the first ("chat").
SERVER_FIGURES = [
    ("saturation acked msgs/s", "saturation.{}.acked_per_s"),
    ("saturation ack p99 ms", "saturation.{}.p99_ms"),
    ("saturation server CPU us/ack", "saturation.{}.server_us_per_ack"),
    ("10x20@20 deliveries/s", "fanout_10x20_20.{}.deliveries_per_s"),
    ("10x20@20 p99 ms", "fanout_10x20_20.{}.p99_ms"),
    ("10x20@20 server CPU us/delivery", "fanout_10x20_20.{}.server_us_per_delivery"),
    ("1x200@20 deliveries/s", "fanout_1x200_20.{}.deliveries_per_s"),
    ("1x200@20 p99 ms", "fanout_1x200_20.{}.p99_ms"),
    ("1x200@20 server CPU us/delivery", "fanout_1x200_20.{}.server_us_per_delivery"),
    ("1x1000@4 deliveries/s", "fanout_1x1000_4.{}.deliveries_per_s"),
    ("1x1000@4 p99 ms", "fanout_1x1000_4.{}.p99_ms"),
    ("1x1000@4 server CPU us/delivery", "fanout_1x1000_4.{}.server_us_per_delivery"),
    ("10x20@2 p99 ms", "fanout_10x20_2.{}.p99_ms"),
    ("idle KiB/socket", "idle.{}.kib_per_socket"),
]


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}" if value < 10 else f"{value:,.1f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def servers_side_by_side(run: dict[str, Any], title: str) -> None:
    """One run's figures on each ASGI server it measured (`bench/run.py --server both`)."""
    servers = run.get("servers") or []
    if len(servers) < 2:
        return
    first, others = servers[0], servers[1:]
    print(f"\n{title}: the chat server on each ASGI server, same run\n")
    print(f"| figure | {first} | " + " | ".join(f"{o} | {o} / {first}" for o in others) + " |")
    print("|---|---:|" + "---:|---:|" * len(others))
    for label, path in SERVER_FIGURES:
        ours = get(run, path.format("chat"))
        if ours is None:
            continue
        cells = []
        for other in others:
            value = get(run, path.format(f"chat_{other}"))
            cells += [fmt(value), fmt(ratio(value, ours))]
        print(f"| {label} | {fmt(ours)} | " + " | ".join(cells) + " |")


def main() -> None:
    if len(sys.argv) == 2:
        servers_side_by_side(json.loads(Path(sys.argv[1]).read_text()), sys.argv[1])
        return
    before, after = (json.loads(Path(path).read_text()) for path in sys.argv[1:3])
    print(f"before: {before.get('app')} {before.get('started_at')}")
    print(f"after:  {after.get('app')} {after.get('started_at')}\n")
    print("| figure | before | after | before / ref | after / ref | reference |")
    print("|---|---:|---:|---:|---:|---|")
    for label, ours, ref, ref_name in FIGURES:
        b, a = get(before, ours), get(after, ours)
        rb, ra = ratio(b, get(before, ref)), ratio(a, get(after, ref))
        print(f"| {label} | {fmt(b)} | {fmt(a)} | {fmt(rb)} | {fmt(ra)} | {ref_name} |")
    servers_side_by_side(before, "before")
    servers_side_by_side(after, "after")


if __name__ == "__main__":
    main()

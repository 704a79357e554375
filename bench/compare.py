"""Before and after: key figures of two benchmark runs side by side.

    .venv/bin/python bench/compare.py bench/results/BEFORE.json bench/results/AFTER.json

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
    ("history seq 1 p50 ms", "history.oldest.p50_ms", "history.newest.p50_ms", "newest page"),
    ("idle sockets held", "idle.chat.held", "idle.bare.held", "bare"),
    ("idle KiB/socket", "idle.chat.kib_per_socket", "idle.bare.kib_per_socket", "bare"),
]


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}" if value < 10 else f"{value:,.1f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def main() -> None:
    before, after = (json.loads(Path(path).read_text()) for path in sys.argv[1:3])
    print(f"before: {before.get('app')} {before.get('started_at')}")
    print(f"after:  {after.get('app')} {after.get('started_at')}\n")
    print("| figure | before | after | before / ref | after / ref | reference |")
    print("|---|---:|---:|---:|---:|---|")
    for label, ours, ref, ref_name in FIGURES:
        b, a = get(before, ours), get(after, ours)
        rb, ra = ratio(b, get(before, ref)), ratio(a, get(after, ref))
        print(f"| {label} | {fmt(b)} | {fmt(a)} | {fmt(rb)} | {fmt(ra)} | {ref_name} |")


if __name__ == "__main__":
    main()

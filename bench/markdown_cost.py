"""What rendering a message's `html` costs, in µs of CPU per message (messaging.markdown).

    .venv/bin/python bench/markdown_cost.py            # the table (~20 s)
    .venv/bin/python bench/markdown_cost.py --json     # the same figures as JSON

Pure CPU, no database, no server: `render_markdown` on typical chat bodies,
split into its three steps (markdown-it parse, its HTML renderer, nh3), and
set against the chat server's CPU per acknowledged send under saturation
(SERVER_US_PER_ACK, docs/performance.md). Each figure is the best of several
`timeit` repeats, the usual way to read through a shared machine's noise (a
noisy neighbour only ever adds time); the median is printed beside it.
"""

import argparse
import json
import os
import statistics
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

# (imported after the path is set)
from messaging import markdown
from messaging.markdown import render_markdown

# docs/performance.md, "Issue 7, before and after": server CPU per acked send, saturation, uvicorn.
SERVER_US_PER_ACK = 1216

BODIES = {
    # What the load generator sends (bench/loadgen.py: a key, then 80 x).
    "loadgen line (96 chars)": "bench-sat-07.1234 " + "x" * 80,
    "short reply": "ok, on my way 👍",
    "sentence, emphasis + code": "Deploy is **done**, but `make migrate` took _ages_ on staging.",
    "with a bare URL": "The dashboard is at https://grafana.example.com/d/abc123?orgId=1 if you need it",
    "with a mention": "@bob can you look at the flaky test before the release?",
    "fenced code (5 lines)": "Try this:\n```\nfor i in range(10):\n    if i % 2:\n        print(i)\n```",
    "mixed ~500 chars": (
        "Release notes for **v2.3**:\n\n- faster history paging (see https://example.com/pr/123)\n"
        "- `reply_to` on messages\n- mentions like @bob notify\n\n> Please test on staging first,"
        " _especially_ the migration.\n\nThanks! Ping me on anything odd, or file it at "
        "https://example.com/issues/new with steps to reproduce and the browser you used."
    ),
    "prose, 4000 chars": ("Lorem ipsum dolor sit amet, *consectetur* adipiscing elit. " * 70)[:4000],
    "pathological: '[' x 4000": "[" * 4000,
    "pathological: '**_`[<' x 666": "**_`[<" * 666,
}
MENTIONS = {"with a mention": ["bob"], "mixed ~500 chars": ["bob"]}


def measure(fn, *, repeat: int, target_s: float = 0.2) -> tuple[float, float]:
    """(best, median) µs per call over `repeat` timeit runs sized to ~target_s each."""
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    number = max(1, int(number * target_s / 0.2))
    runs = [t / number * 1e6 for t in timer.repeat(repeat=repeat, number=number)]
    return min(runs), statistics.median(runs)


def steps(body: str, mentions: list[str]) -> dict[str, float]:
    """Best µs of each step: parse (and mention links), markdown-it's renderer, nh3."""
    md, cleaner = markdown._md, markdown._cleaner
    tokens = md.parse(body)
    rendered = md.renderer.render(tokens, md.options, {})
    return {
        "parse": measure(lambda: md.parse(body), repeat=5)[0],
        "render": measure(lambda: md.renderer.render(tokens, md.options, {}), repeat=5)[0],
        "nh3": measure(lambda: cleaner.clean(rendered), repeat=5)[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a Markdown table")
    parser.add_argument("--repeat", type=int, default=7, help="timeit repeats per body (default 7)")
    args = parser.parse_args()
    rows = []
    for name, body in BODIES.items():
        mentions = MENTIONS.get(name, [])
        best, median = measure(lambda b=body, m=mentions: render_markdown(b, m), repeat=args.repeat)
        rows.append({"body": name, "chars": len(body), "best_us": best, "median_us": median, **steps(body, mentions)})
    if args.json:
        print(json.dumps({"server_us_per_ack": SERVER_US_PER_ACK, "rows": rows}, indent=2))
        return
    print(f"render_markdown, µs per message (best of {args.repeat}; median), vs {SERVER_US_PER_ACK:,} µs per ack\n")
    print("| body | chars | µs best | µs median | parse | render | nh3 | % of an ack |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        share = row["best_us"] / SERVER_US_PER_ACK * 100
        print(
            f"| {row['body']} | {row['chars']:,} | {row['best_us']:,.1f} | {row['median_us']:,.1f}"
            f" | {row['parse']:,.1f} | {row['render']:,.1f} | {row['nh3']:,.1f} | {share:.1f}% |"
        )


if __name__ == "__main__":
    main()

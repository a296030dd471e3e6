"""Throughput of `distill generate` against a local OpenAI-compatible server.

The server (tests/teacher_server.py, its own process) answers every request after a fixed
latency, so with C requests in flight the best possible rate is C / latency (64 / 0.2 s = 320/s).
The client side is the whole pipeline: openai client, journal, validation of every answer,
output records. Run: `python benchmarks/teacher_client.py [--requests 3000] [--thought cot]`.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from distill.generate import Settings, generate  # noqa: E402
from distill.records import Record  # noqa: E402

RATIONALES = {
    "cot": "She has {a} apples and buys {b} more, so she has {a} + {b} = {s} apples.\nThe answer is {s}.",
    "pot": "apples = {a}\nbought = {b}\nans = apples + bought",
    "eot": "% Assume she has x apples in the end:\ntotal = x\n% She has {a} and buys {b} more:\n{a} + {b} = total\nans = total",
}


def workload(n: int, thought: str) -> tuple[list[Record], dict]:
    items, script = [], {}
    for i in range(n):
        a, b = 3 + i % 97, 5 + i % 13
        q = f"Ann has {a} apples and buys {b} more (item {i}). How many apples does she have?"
        items.append(Record(id=f"bench/{i}", question=q, answer=a + b, source="bench"))
        script[q] = {thought: [RATIONALES[thought].format(a=a, b=b, s=a + b)]}
    return items, script


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--thought", default="cot", choices=sorted(RATIONALES))
    args = ap.parse_args()
    items, script = workload(args.requests, args.thought)
    with tempfile.TemporaryDirectory() as tmp:
        script_path = Path(tmp, "script.json")
        script_path.write_text(json.dumps(script))
        server = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "teacher_server.py"), "--script", str(script_path),
             "--latency", str(args.latency)], stdout=subprocess.PIPE, text=True,
        )
        try:
            url = server.stdout.readline().split()[1]  # type: ignore[union-attr]
            result = generate(items, args.thought, "openai:bench", Path(tmp, "out.jsonl"),
                              teacher_options={"base_url": url, "api_key": "x"}, concurrency=args.concurrency,
                              settings=Settings(samples=1, temperature=0.0), show_progress=False)
            cpu = time.process_time()
        finally:
            server.terminate()
            server.wait()
    bound = args.concurrency / args.latency
    # From the start of the run (data, prompts, client and checkers ready) to the last record written.
    rate = result.stats.called / result.stats.elapsed
    kept = result.stats.correct[args.thought]
    print(f"| {args.thought} | {args.requests} | {args.concurrency} | {args.latency * 1000:.0f} ms | "
          f"{bound:.0f}/s | {rate:.1f}/s | {rate / bound:.1%} | {kept}/{result.stats.written} | "
          f"{cpu / result.stats.called * 1000:.2f} ms | {os.cpu_count()} cores, Python {platform.python_version()} |")


if __name__ == "__main__":
    main()

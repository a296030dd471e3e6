"""MATH answer comparisons per second: our checker (solvers/mathans) against math-verify's own
`verify` called plainly (its `parse` on both answers, default limits), in the same run.

Pairs: the gold answers of MATH test against equivalent rewritings (the `equal: true` rows of
tests/data/math_answer_corpus.jsonl: another form of the value, and a model's sentence around it).
Then the hard-input tail (huge exponents, 5,000-deep nesting, 1 MB answers), one by one and mixed
into a batch. Run: `python benchmarks/answer_check.py [--workers 2] [--mv-pairs 1000]` from the
repository root; prints a table and writes benchmarks/results/answer_check.md.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from solvers.mathans import Checker, extract_final  # noqa: E402
from test_math_answers import HARD  # noqa: E402

CORPUS = ROOT / "tests" / "data" / "math_answer_corpus.jsonl"
RESULTS = ROOT / "benchmarks" / "results" / "answer_check.md"

# math-verify on one hard pair, in a child process so that a stall cannot hang the benchmark.
_MV_ONE = """
import sys, json, time
from math_verify import parse, verify
pred, gold = json.loads(sys.stdin.read())
t = time.perf_counter()
r = verify(parse("$" + gold + "$"), parse("$" + pred + "$"))
print(json.dumps([r, time.perf_counter() - t]))
"""


def _pairs() -> list[tuple[str, str, str]]:
    rows = [json.loads(line) for line in open(CORPUS, encoding="utf-8")]
    return [(r["pred"], r["gold"], r["kind"]) for r in rows if r["equal"] and r["source"] == "math:test"]


def _ours(pairs: list[tuple[str, str, str]], workers: int) -> tuple[float, float, float]:
    """(pairs per second, agreement, worst single-pair seconds is not measured here: batch)."""
    with Checker(workers=workers) as c:
        c.check(r"x^{2}+\infty", r"\infty+x^2")  # workers started: start-up is not the comparison rate
        t = time.perf_counter()
        verdicts = c.check_many([(extract_final(p) if k == "solution" else p, g) for p, g, k in pairs])
        dt = time.perf_counter() - t
    return len(pairs) / dt, sum(v.equal for v in verdicts) / len(pairs), dt


def _math_verify(pairs: list[tuple[str, str, str]]) -> tuple[float, float]:
    from math_verify import parse, verify

    t = time.perf_counter()
    ok = 0
    for p, g, k in pairs:
        ok += verify(parse("$" + g + "$"), parse(p if k == "solution" else "$" + p + "$"))
    return len(pairs) / (time.perf_counter() - t), ok / len(pairs)


def _mv_hard(pred: str, gold: str, cap: float) -> str:
    try:
        out = subprocess.run([sys.executable, "-c", _MV_ONE], input=json.dumps([pred, gold]), capture_output=True,
                             text=True, timeout=cap)
        r, dt = json.loads(out.stdout.strip().splitlines()[-1])
        return f"{dt:.2f} s ({'equal' if r else 'not equal'})"
    except subprocess.TimeoutExpired:
        return f"> {cap:.0f} s (killed)"
    except (ValueError, IndexError):
        return "crashed"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--mv-pairs", type=int, default=1000, help="pairs for math-verify (it is slow)")
    ap.add_argument("--cap", type=float, default=30.0, help="seconds before a math-verify hard case is killed")
    args = ap.parse_args()
    pairs = _pairs()
    sub = pairs[:: max(1, len(pairs) // args.mv_pairs)][: args.mv_pairs]
    ours_rate, ours_agree, _ = _ours(pairs, args.workers)
    ours_sub_rate, ours_sub_agree, _ = _ours(sub, args.workers)
    mv_rate, mv_agree = _math_verify(sub)

    lines = [
        f"# MATH answer checking: {datetime.date.today().isoformat()}",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared with other jobs); Python {platform.python_version()}.",
        f"Command: `python benchmarks/answer_check.py --workers {args.workers} --mv-pairs {args.mv_pairs}`",
        "",
        "| checker | pairs | pairs/s | judged equal |",
        "|---|---|---|---|",
        f"| ours (solvers.mathans, {args.workers} workers) | {len(pairs)} (all) | {ours_rate:,.0f} | {ours_agree:.2%} |",
        f"| ours, same subset as math-verify | {len(sub)} | {ours_sub_rate:,.0f} | {ours_sub_agree:.2%} |",
        f"| math-verify `verify(parse(g), parse(p))`, plain | {len(sub)} | {mv_rate:,.0f} | {mv_agree:.2%} |",
        "",
        f"Ratio on the same subset: {ours_sub_rate / mv_rate:.1f}x.",
        "",
        "Hard inputs (ours: per-answer limit 2 s, the worker is killed and replaced past it; math-verify: its",
        f"default 5 s signal timeouts, run in a child process killed after {args.cap:.0f} s):",
        "",
        "| input | chars | ours | status | math-verify |",
        "|---|---|---|---|---|",
    ]
    hard_total = 0.0
    with Checker(workers=1) as c:
        c.check(r"x^{2}+\infty", r"\infty+x^2")
        for pred, gold in HARD:
            t = time.perf_counter()
            v = c.check(pred, gold)
            dt = time.perf_counter() - t
            hard_total += dt
            label = (pred[:24] + "...") if len(pred) > 24 else pred
            lines.append(f"| `{label}` vs `{gold[:20]}` | {len(pred):,} | {dt:.3f} s | {v.status} | {_mv_hard(pred, gold, args.cap)} |")
    # a batch of ordinary pairs with the hard ones mixed in: does the batch stall?
    batch = pairs[:2000]
    mixed = list(batch)
    for i, (p, g) in enumerate(HARD):
        mixed.insert(i * 250, (p, g, "hard"))
    with Checker(workers=args.workers) as c:
        c.check(r"x^{2}+\infty", r"\infty+x^2")
        t = time.perf_counter()
        c.check_many([(extract_final(p) if k == "solution" else p, g) for p, g, k in batch])
        plain = time.perf_counter() - t
        t = time.perf_counter()
        c.check_many([(extract_final(p) if k == "solution" else p, g) for p, g, k in mixed])
        with_hard = time.perf_counter() - t
    lines += [
        "",
        f"Batch of {len(batch)} ordinary pairs: {plain:.2f} s; the same with the {len(HARD)} hard inputs mixed in: "
        f"{with_hard:.2f} s (the hard ones alone, one by one: {hard_total:.2f} s).",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()

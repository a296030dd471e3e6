"""EoT solver throughput against the reference `sympy.solve` solver, on the test corpus.

Run: `python benchmarks/eot_solver.py` (from the repository root). Ours solves the exact cases in
this process and the ones that need SymPy in the sandbox, as `solve_eot` always does (the table says
how many went there); the sandbox is started before the clock. Adversarial cases (`adv-*`)
are left out: the reference would `sympify` them (unsafe) or spend its 5 s limit on them, which
would flatter our ratio. Prints a table and writes it to benchmarks/results/eot_solver.md.
"""
from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import mpmath
import sympy
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from eot_reference import reference_solve  # noqa: E402
from solvers.eot.algebra import NeedsSymbolic, exact_only  # noqa: E402
from solvers.equations import solve_eot, solve_symbolic  # noqa: E402

CORPUS = ROOT / "tests" / "data" / "eot_corpus.jsonl"
RESULTS = ROOT / "benchmarks" / "results" / "eot_solver.md"


def _timed(fn, texts: list[str], min_seconds: float) -> tuple[list, float]:
    """Answers and systems per second (repeating the whole corpus for at least `min_seconds`)."""
    answers, runs, start = [], 0, time.perf_counter()
    while True:
        answers = [fn(t) for t in texts]
        runs += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return answers, runs * len(texts) / elapsed


def _needs_sandbox(text: str) -> bool:
    try:
        with exact_only():
            solve_symbolic(text)
    except NeedsSymbolic:
        return True
    return False


def main() -> None:
    cases = [json.loads(line) for line in CORPUS.open(encoding="utf-8")]
    cases = [c for c in cases if not c["id"].startswith("adv-")]
    texts = [c["rationale"] for c in cases]
    sandboxed = sum(map(_needs_sandbox, texts))
    solve_eot("x**3 = 2\nans = x")  # starts the sandbox that solves the SymPy cases, before the clock
    ours, ours_rate = _timed(lambda t: solve_eot(t).prediction, texts, 2.0)
    ref, ref_rate = _timed(reference_solve, texts, 0.0)
    both = [(c["id"], a, b) for c, a, b in zip(cases, ours, ref) if a is not None and b is not None]
    differ = [(i, a, b) for i, a, b in both if not math.isclose(a, b, rel_tol=1e-9)]

    table = Table(title=f"EoT solver vs sympy.solve ({len(cases)} corpus systems, adversarial ones excluded)")
    for column in ("systems", "in the sandbox", "ours systems/s", "sympy.solve systems/s", "ratio", "answered: ours",
                   "answered: sympy.solve", "identical where both answer"):
        table.add_column(column, justify="right")
    row = (str(len(cases)), str(sandboxed), f"{ours_rate:,.0f}", f"{ref_rate:,.1f}", f"{ours_rate / ref_rate:,.0f}x",
           str(sum(a is not None for a in ours)), str(sum(b is not None for b in ref)),
           f"{len(both) - len(differ)}/{len(both)}")
    table.add_row(*row)
    console = Console(record=True, width=140)
    console.print(table)
    for i, a, b in differ:
        console.print(f"  differs: {i}: ours {a}, sympy.solve {b}")

    lines = [
        "# EoT solver benchmark", "",
        f"`python benchmarks/eot_solver.py` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (1-minute load average "
        f"{os.getloadavg()[0]:.1f}), Python {platform.python_version()}, SymPy {sympy.__version__}, "
        f"mpmath {mpmath.__version__}; ours solves the exact cases in this process and the ones that need "
        "SymPy in the sandbox (solvers/executor.py, started before the clock), as `solve_eot` always does; "
        "corpus tests/data/eot_corpus.jsonl without the adversarial cases. The reference is NOTES.md's solver (every `=` line sympified, `sympy.solve`, "
        "first solution).", "",
        "| " + " | ".join(c.header for c in table.columns) + " |",
        "|" + "---:|" * len(table.columns),
        "| " + " | ".join(row) + " |", "",
        "Where both answer and differ (the reference takes sympy's first solution, often the negative root; "
        "`round` is half-up in ours, half-to-even and Float-based in the reference):", "",
        *[f"- `{i}`: ours {a}, sympy.solve {b}" for i, a, b in differ],
    ]
    RESULTS.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

"""Sandboxed executor throughput against a pebble.ProcessPool running the same programs with plain exec.

Run: `python benchmarks/executor.py [--programs N]` (from the repository root). The programs are
the recorded teacher programs of ../shared/data/recorded (SVAMP and MultiArith program-of-thought
output) that ran to an answer when recorded, repeated to N programs (default 30,000). The
baseline schedules each program on `pebble.ProcessPool(max_workers=os.cpu_count())` with a
per-task timeout, executing it with plain `exec` (no isolation). Prints a table and writes it to
benchmarks/results/executor.md.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

from pebble import ProcessPool
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from solvers.answers import to_number  # noqa: E402
from solvers.executor import Executor  # noqa: E402

RECORDED = ROOT.parent / "shared" / "data" / "recorded"
RESULTS = ROOT / "benchmarks" / "results" / "executor.md"
TIMEOUT = 5.0


def recorded_programs() -> list[str]:
    programs = []
    for name in ("svamp_pot_codex.jsonl", "multiarith_pot_codex_zeroshot.jsonl"):
        for line in (RECORDED / name).open(encoding="utf-8"):
            record = json.loads(line)
            if "generated" in record and record["executed"] is not None:
                generated = record["generated"]
                programs.append(generated[0] if isinstance(generated, list) else generated)
    return programs


def plain_exec(program: str) -> float | int | None:
    """The baseline: exec in the pool process, same answer rules, no isolation at all."""
    namespace: dict = {"__name__": "__main__"}
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            exec(program, namespace)
            if "ans" in namespace:
                return to_number(namespace["ans"])
            for name in ("solution", "solver"):
                if callable(namespace.get(name)):
                    return to_number(namespace[name]())
    except Exception:
        return None
    words = [w for w in out.getvalue().replace(",", "").split() if w.lstrip("-").replace(".", "", 1).isdigit()]
    return to_number(float(words[-1])) if words else None


def run_pebble(programs: list[str]) -> tuple[list, float]:
    with ProcessPool(max_workers=os.cpu_count()) as pool:
        pool.schedule(plain_exec, args=("ans = 1",)).result()  # workers up before the clock starts
        start = time.perf_counter()
        futures = [pool.schedule(plain_exec, args=(p,), timeout=TIMEOUT) for p in programs]
        answers = []
        for future in futures:
            try:
                answers.append(future.result())
            except Exception:
                answers.append(None)
        return answers, time.perf_counter() - start


def run_executor(programs: list[str]) -> tuple[list, float, tuple[str, ...]]:
    """Every program runs in its own fork, compiled there: nothing is cached between programs."""
    with Executor(timeout=TIMEOUT) as executor:
        executor.run_many(["ans = 1"] * 8)  # workers up before the clock starts
        start = time.perf_counter()
        outcomes = executor.run_many(programs)
        elapsed = time.perf_counter() - start
        return [o.prediction for o in outcomes], elapsed, executor.isolation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", type=int, default=30_000)
    args = parser.parse_args()
    base = recorded_programs()
    programs = (base * math.ceil(args.programs / len(base)))[: args.programs]

    # "unique": a distinct comment line per program defeats the compile cache (all-new programs).
    unique = [f"{p}\n# {i}" for i, p in enumerate(programs)]
    ref, ref_s = run_pebble(programs)
    rows = []
    for label, batch in (("repeated", programs), ("unique (a distinct comment each)", unique)):
        ours, ours_s, layers = run_executor(batch)
        agree = sum(a == b or (a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9))
                    for a, b in zip(ours, ref))
        rate, ref_rate = len(batch) / ours_s, len(programs) / ref_s
        rows.append((label, f"{len(batch):,}", str(os.cpu_count()), f"{rate:,.0f}", f"{ref_rate:,.0f}",
                     f"{rate / ref_rate:,.1f}x", f"{agree:,}/{len(batch):,}"))

    columns = ("programs", "count", "cores", "executor programs/s", "pebble programs/s", "ratio", "answers agree")
    table = Table(title=f"Sandboxed executor vs pebble.ProcessPool + exec ({len(programs):,} recorded PoT programs)")
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*row)
    console = Console(record=True, width=160)
    console.print(table)
    console.print(f"isolation: {', '.join(layers)}")

    header = "| " + " | ".join(columns) + " |"
    RESULTS.write_text(
        "# Sandboxed executor benchmark\n\n"
        f"`python benchmarks/executor.py` on {platform.machine()}, Python {platform.python_version()}, "
        f"{os.cpu_count()} cores, timeout {TIMEOUT:g} s per program. Programs: the recorded SVAMP and "
        f"MultiArith program-of-thought programs that produced an answer when recorded ({len(base):,}), "
        f"repeated to {len(programs):,}. Baseline: one `pebble.ProcessPool(max_workers={os.cpu_count()})` "
        "task per program with a per-task timeout, plain `exec`, no isolation.\n\n"
        f"Executor isolation layers active: {', '.join(layers)}.\n\n"
        f"{header}\n|---|---:|---:|---:|---:|---:|---:|\n"
        + "".join("| " + " | ".join(row) + " |\n" for row in rows)
        + "\nThe pebble baseline runs the repeated programs (its cost does not depend on repetition).\n",
        encoding="utf-8",
    )


if __name__ == "__main__":
    main()

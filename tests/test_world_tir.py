"""The world teacher's tool-integrated traces: written turn by turn against the sandbox, with
fabricated outputs and reasoning errors that validation must reject.

`_converse` is the multi-round loop in small (the teacher stops at ```output, the trace's cells run
in the sandbox, the real output is appended, the teacher goes on from that prefix): enough to
measure the checker on the world's traces without `distill generate`.
"""
from __future__ import annotations

import asyncio
import json
import random
import sys
from collections import Counter

from distill.checking import Checker
from distill.teachers.base import Request
from distill.teachers.extract import extract_rationale
from distill.world import generate_problems
from distill.world.audit import audit
from distill.world.teacher import WorldTeacher
from distill.world.tir import plan
from distill.world.problem import Problem
from solvers.answers import is_correct
from solvers.grading import grade
from solvers.executor import Executor
from solvers.outcome import Outcome, Status
from solvers.tir import STOP, append_output, open_cells, parse, shown

MAX_ROUNDS = 8


def _request(question: str, prefix: str, sample: int) -> Request:
    return Request([{"role": "user", "content": f"Question: {question}\n"}], n=1, stop=[STOP, "\nQuestion:"],
                   prefix=prefix, meta={"question": question, "thought": "tir", "id": f"q{sample}"})


def _converse(teacher: WorldTeacher, questions: list[str], executor: Executor) -> list[str]:
    """Each question's finished trace: rounds of the teacher and the sandbox, all questions side by side."""
    async def ask(prefixes: list[str]) -> list[str]:
        answers = await asyncio.gather(*(teacher.complete(_request(q, p, 0)) for q, p in zip(questions, prefixes)))
        return [p + a[0].text for p, a in zip(prefixes, answers)]

    traces = asyncio.run(ask([""] * len(questions)))
    for _ in range(MAX_ROUNDS):
        open_ = [(i, cells) for i, t in enumerate(traces) if (cells := open_cells(t)) is not None]
        if not open_:
            break
        runs = executor.run_cells([cells for _, cells in open_])
        prefixes = list(traces)
        for (i, _), cells in zip(open_, runs):
            output = shown(cells.outputs[-1]) if cells.status is Status.OK and cells.outputs else cells.detail
            prefixes[i] = append_output(traces[i], output)
        continued = asyncio.run(ask(prefixes))
        traces = [continued[i] if prefixes[i] != traces[i] else traces[i] for i in range(len(traces))]
    return traces


def measure(n: int, error_rate: float = 0.5, seed: int = 0, families: list[str] | None = None) -> dict[str, object]:
    """Run `n` world questions through the loop and the checker; what was rejected, by kind."""
    problems = generate_problems("train", n, seed=seed, families=families)
    teacher = WorldTeacher(error_rate=error_rate, seed=seed)
    with Executor(workers=2, timeout=5) as executor:
        traces = _converse(teacher, [p.question for p in problems], executor)
    kinds = [teacher.write(p.question, "tir")[1] for p in problems]
    with Checker("tir") as checker:
        outcomes = checker.check([extract_rationale("tir", t) for t in traces])
    verdicts = [o.status is Status.OK and o.prediction is not None and checker_correct(o, p) for o, p in zip(outcomes, problems)]
    injected = [(k, v, o) for k, v, o in zip(kinds, verdicts, outcomes) if k is not None]
    clean = [(v, o, t) for k, v, o, t in zip(kinds, verdicts, outcomes, traces) if k is None]
    return {
        "traces": traces, "kinds": kinds, "outcomes": outcomes,
        "injected": len(injected), "rejected": sum(not v for _, v, _ in injected),
        "fabricated": sum(k == "fabricated_output" for k, _, _ in injected),
        "fabricated_mismatch": sum(k == "fabricated_output" and o.status is Status.OUTPUT_MISMATCH for k, _, o in injected),
        "accepted_kinds": Counter(k for k, v, _ in injected if v),
        "clean": len(clean), "clean_rejected": [(o, t) for v, o, t in clean if not v],
    }


def checker_correct(outcome: Outcome, problem: Problem) -> bool:
    if isinstance(problem.answer, str):  # a LaTeX gold
        return grade(outcome, problem.answer, latex=True).correct is True
    return is_correct(outcome.prediction, problem.answer)


def _assert_bars(m: dict[str, object]) -> None:
    print(f"\nTIR world traces: injected errors rejected {m['rejected']}/{m['injected']}; fabricated outputs "
          f"rejected as output-mismatch {m['fabricated_mismatch']}/{m['fabricated']}; correct traces rejected "
          f"{len(m['clean_rejected'])}/{m['clean']}; accepted: {dict(m['accepted_kinds']) or 'none'}")
    assert m["fabricated"] > 0 and m["fabricated_mismatch"] == m["fabricated"]
    assert m["rejected"] >= 0.99 * m["injected"], m["accepted_kinds"]
    assert len(m["clean_rejected"]) <= 0.005 * m["clean"], m["clean_rejected"][:2]


def test_world_tir_bars(tmp_path):
    m = measure(300)
    _assert_bars(m)
    # generate's audit tells the same from the records (raw: the trace with the real outputs)
    problems = generate_problems("train", 300)
    path = tmp_path / "rationales.jsonl"
    path.write_text("".join(json.dumps({"id": p.id, "question": p.question, "thought": "tir", "sample": 0,
                                        "correct": o.status is Status.OK and checker_correct(o, p), "meta": {"raw": t}}) + "\n"
                            for p, o, t in zip(problems, m["outcomes"], m["traces"])))
    result = audit(path, WorldTeacher(error_rate=0.5), round_size=1)
    assert (result.unmatched, result.injected, result.rejected, result.clean_rejected) == (0, m["injected"], m["rejected"], 0)


def test_world_tir_bars_on_latex_answers():
    """The families whose gold is LaTeX: one SymPy cell printing the exact answer, boxed in LaTeX."""
    m = measure(60, families=["marbles", "diagonal", "crossing"])
    _assert_bars(m)
    assert m["clean"] > 10 and any("sqrt" in t for t in m["traces"]) and any("\\frac" in t for t in m["traces"])


def test_turns_honour_the_stop_and_continue_from_the_prefix():
    problem = generate_problems("train", 3)[1]
    trace = plan(problem, None, random.Random(3), 0)
    first = trace.continuation("", [STOP])
    assert open_cells(first) is not None and STOP not in first and first == trace.text[:len(first)]
    assert trace.continuation("", None) == trace.text  # without the stop: the whole trace at once
    # Given the trace up to a cell with its output, the teacher writes the rest.
    cut = trace.text.index("```\n", trace.text.index(STOP)) + 4
    rest = trace.continuation(trace.text[:cut], [STOP])
    assert trace.text[cut:].startswith(rest) and rest


def test_fabricated_output_ignores_the_stop():
    problem = generate_problems("train", 1)[0]
    rng = random.Random(0)
    trace = next(t for t in (plan(problem, "fabricated_output", rng) for _ in range(50)) if 0 in t.fabricated)
    first = trace.continuation("", [STOP])
    assert STOP in first  # the teacher wrote the first cell's output itself
    assert parse(first)[0].output == trace.turns[0].output


def test_clean_traces_expect_exactly_what_the_sandbox_prints():
    """A clean trace's outputs are what Python prints: the whole trace in one request (no stop)
    replays without a mismatch, and reaches the gold answer."""
    problems = generate_problems("test", 60)
    traces = [plan(p, None, random.Random(i), i).text for i, p in enumerate(problems)]
    with Checker("tir") as checker:
        outcomes = checker.check(traces)
    wrong = [(o, t) for o, t, p in zip(outcomes, traces, problems) if not (o.status is Status.OK and checker_correct(o, p))]
    assert not wrong, wrong[:2]


if __name__ == "__main__":  # the figure on more traces: python tests/test_world_tir.py 5000 [error rate]
    _assert_bars(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 5000, float(sys.argv[2]) if len(sys.argv) > 2 else 0.5))

"""`distill validate`: say, per rationale, what answer it computes and whether it is right.

A gold that is one number keeps the numeric rule; in a file whose golds are LaTeX (MATH), any
other string gold is a LaTeX answer, compared mathematically (solvers.grading)."""
from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distill.checking import Checker
from distill.progress import progress_bar
from distill.records import InputError, check_writable, iter_jsonl, write_jsonl
from solvers.answers import parse_gold
from solvers.grading import grade_many

CHUNK = 512  # rationales checked per progress update


@dataclass
class Summary:
    total: int = 0
    kept: int = 0  # correct
    wrong: int = 0  # an answer, but not the gold one
    no_gold: int = 0
    failures: Counter[str] = field(default_factory=Counter)


def _rationale(value: Any) -> str:
    # Recorded teacher files keep samples as a list: the first is the one validated.
    if isinstance(value, list):
        value = value[0] if value else ""
    return value if isinstance(value, str) else ""


ANSWERS = ("auto", "number", "latex")
_LATEX = re.compile(r"\\[a-zA-Z]+|\^|[{}_]")  # a command, a power, braces, a subscript


def latex_golds(golds: Sequence[Any], answers: str = "auto") -> bool:
    """Whether a file's string golds are LaTeX answers: `answers` says so, or ("auto") some gold that
    is not one number is written in LaTeX (MATH files: `\\frac{1}{9}`, `x^2+1`); otherwise such
    golds are unknown, as in numeric sets (`2:3`)."""
    if answers != "auto":
        return answers == "latex"
    return any(isinstance(g, str) and parse_gold(g) is None and _LATEX.search(g) for g in golds)


def gold_of(value: Any, latex: bool) -> float | int | str | None:
    """A gold as the file gives it: without `latex`, a number where it is one (today's parse), else
    None; with `latex`, a LaTeX answer, numbers included (as in MATH, where the number rule's
    `first number after \\boxed{` would take `\\boxed{\\frac{10}{3}}` for the gold 10)."""
    if not latex:
        return parse_gold(value)
    if value is None or isinstance(value, bool) or not str(value).strip():
        return None
    return str(value).strip()


def read_inputs(path: str | os.PathLike, fields: tuple[str, str, str]) -> list[dict[str, Any]]:
    rows = []
    for lineno, obj in iter_jsonl(path):
        for name in fields:
            if name not in obj:
                raise InputError(f"missing field {name!r}", path, lineno)
        if not isinstance(obj[fields[1]], (str, list)):
            raise InputError(f"field {fields[1]!r} must be a string", path, lineno)
        rows.append(obj)
    return rows


def validate_file(
    thought: str,
    in_path: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    overwrite: bool = False,
    question_field: str = "question",
    rationale_field: str = "rationale",
    answer_field: str = "answer",
    timeout: float = 5.0,
    workers: int | None = None,
    show_progress: bool = True,
    answers: str = "auto",
) -> Summary:
    """Check every rationale of IN and write OUT: the input fields, in order, plus
    `prediction`, `status` and `correct`. OUT is written atomically and never clobbered.
    `answers`: how string golds that are not one number are read (see `latex_golds`)."""
    if Path(out_path).resolve() == Path(in_path).resolve():
        raise InputError("output would overwrite the input", out_path)
    check_writable(out_path, overwrite)
    rows = read_inputs(in_path, (question_field, rationale_field, answer_field))
    if answers not in ANSWERS:
        raise InputError(f"--answers must be one of {', '.join(ANSWERS)}, not {answers!r}")
    latex = latex_golds([r[answer_field] for r in rows], answers)
    summary = Summary(total=len(rows))
    with Checker(thought, timeout=timeout, workers=workers) as checker, progress_bar(
        f"validating {thought}", len(rows), enabled=show_progress
    ) as advance:
        for start in range(0, len(rows), CHUNK):
            chunk = rows[start : start + CHUNK]
            outcomes = checker.check([_rationale(r[rationale_field]) for r in chunk])
            for row, g in zip(chunk, grade_many(outcomes, [gold_of(r[answer_field], latex) for r in chunk])):
                correct = g.correct
                row.update(prediction=g.prediction, status=g.status, correct=correct)
                if g.status != "ok":
                    summary.failures[g.status] += 1
                elif correct is None:
                    summary.no_gold += 1
                elif correct:
                    summary.kept += 1
                else:
                    summary.wrong += 1
            advance(len(chunk))
    write_jsonl(out_path, rows)
    return summary

"""`distill validate`: say, per rationale, what answer it computes and whether it is right."""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distill.checking import Checker
from distill.progress import progress_bar
from distill.records import InputError, check_writable, iter_jsonl, write_jsonl
from solvers.answers import outcome_correct, parse_gold

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
) -> Summary:
    """Check every rationale of IN and write OUT: the input fields, in order, plus
    `prediction`, `status` and `correct`. OUT is written atomically and never clobbered."""
    if Path(out_path).resolve() == Path(in_path).resolve():
        raise InputError("output would overwrite the input", out_path)
    check_writable(out_path, overwrite)
    rows = read_inputs(in_path, (question_field, rationale_field, answer_field))
    summary = Summary(total=len(rows))
    with Checker(thought, timeout=timeout, workers=workers) as checker, progress_bar(
        f"validating {thought}", len(rows), enabled=show_progress
    ) as advance:
        for start in range(0, len(rows), CHUNK):
            chunk = rows[start : start + CHUNK]
            outcomes = checker.check([_rationale(r[rationale_field]) for r in chunk])
            for row, outcome in zip(chunk, outcomes):
                gold = parse_gold(row[answer_field])
                correct = outcome_correct(outcome, gold)
                row.update(prediction=outcome.prediction, status=str(outcome.status), correct=correct)
                if not outcome.is_ok:
                    summary.failures[str(outcome.status)] += 1
                elif correct is None:
                    summary.no_gold += 1
                elif correct:
                    summary.kept += 1
                else:
                    summary.wrong += 1
            advance(len(chunk))
    write_jsonl(out_path, rows)
    return summary

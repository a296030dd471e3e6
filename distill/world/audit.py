"""How many of the simulated teacher's injected errors the checkers rejected, read from generate's output.

The world teacher decides each completion from (seed, question, thought, round, sample) alone, so
`WorldTeacher.write` tells again, for every written record, whether its raw text carries an injected
error and which kind; the record's `correct` says whether the checkers kept it. `distill generate`
prints the result after a run with a `world:` teacher.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from distill.records import iter_jsonl
from distill.world.generate import find
from distill.world.teacher import _SEEDED_ID, WorldTeacher


@dataclass
class Audit:
    injected: int = 0  # records whose raw text carries an injected error
    rejected: int = 0  # ... of them, rejected by the checkers
    clean: int = 0  # records without an injected error
    clean_rejected: int = 0  # ... of them, rejected anyway (a checker too strict)
    unmatched: int = 0  # records the teacher does not write again (another teacher, failed requests)
    inapplicable: int = 0  # records of a thought that cannot state the answer (EoT for a tuple), left out above
    accepted_kinds: Counter[str] = field(default_factory=Counter)  # injected errors that got through, by kind

    @property
    def rejection_rate(self) -> float:
        return self.rejected / self.injected if self.injected else 1.0

    def summary(self) -> str:
        through = ", ".join(f"{k} {n}" for k, n in self.accepted_kinds.most_common()) or "none"
        line = (f"injected teacher errors rejected by the checkers: {self.rejected}/{self.injected} "
                f"({self.rejection_rate:.1%}; accepted: {through}); correct rationales rejected: "
                f"{self.clean_rejected}/{self.clean}")
        if self.inapplicable:
            line += f"; {self.inapplicable} rationales of a thought that cannot state the answer (EoT, tuples) left out"
        return line + (f"; {self.unmatched} records not from this teacher" if self.unmatched else "")


def _written(text: str, thought: str) -> str:
    """What the teacher itself wrote of an answer: a TIR trace without its outputs (the runtime's
    outputs are appended between the teacher's turns)."""
    if thought != "tir":
        return text
    from solvers.tir import parse, render

    return render([replace(t, output=None) for t in parse(text)])


def audit(path: str | Path, teacher: WorldTeacher, round_size: int, greedy: bool = False) -> Audit:
    """Audit the records in `path` (written with `--keep all`) that `teacher` answered in requests of
    `round_size` samples (sample s was sample s % round_size of round s // round_size)."""
    result = Audit()
    for _, rec in iter_jsonl(Path(path)):
        raw = (rec.get("meta") or {}).get("raw")
        sample = int(rec.get("sample") or 0)
        seeded = _SEEDED_ID.match(str(rec.get("id", "")))
        found = raw and teacher.write(rec["question"], rec["thought"], 0 if greedy else sample % round_size,
                                      0 if greedy else sample // round_size,
                                      int(seeded.group(1)) if seeded else None)
        if not found or _written(found[0], rec["thought"]) != _written(raw, rec["thought"]):
            result.unmatched += 1
            continue
        kind = found[1]
        problem = find(rec["question"], (), limit=0)  # written just now: already drawn
        if kind is None and problem is not None and not problem.applies(rec["thought"]):
            result.inapplicable += 1
        elif kind is None:
            result.clean += 1
            result.clean_rejected += rec.get("correct") is not True
        else:
            result.injected += 1
            if rec.get("correct") is True:
                result.accepted_kinds[kind] += 1
            else:
                result.rejected += 1
    return result

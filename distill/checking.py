"""One entry point that turns rationales of any thought into Outcomes.

The thought registry says how each thought is checked (CoT by answer extraction, PoT in the
sandboxed executor, EoT with the equation solver, or a user's own); every stage that checks
rationales (validate, generate, eval) goes through here.
"""
from __future__ import annotations

from collections.abc import Sequence

from distill.records import Record, latex_answers
from distill.thoughts import BatchCheck, get_thought
from solvers.grading import grade_many
from solvers.outcome import Outcome


class Checker:
    """Checks batches of rationales of one thought; owns the thought's open checker (the
    executor pool for PoT) until closed."""

    def __init__(self, thought: str, *, timeout: float = 5.0, workers: int | None = None):
        self.thought = thought
        self.timeout = timeout
        self._open: BatchCheck | None = get_thought(thought).open_checker(timeout, workers)

    def check(self, rationales: Sequence[str]) -> list[Outcome]:
        if self._open is None:
            raise RuntimeError("checker is closed")
        return self._open.check(list(rationales))

    def fill(self, records: Sequence[Record]) -> None:
        """Check the records' rationales and set their prediction, status and correct in place (a
        LaTeX gold, or a record marked as having LaTeX answers, through solvers.mathans)."""
        outcomes = self.check([r.rationale or "" for r in records])
        for r, g in zip(records, grade_many(outcomes, [r.answer for r in records], [latex_answers(r) for r in records])):
            r.prediction, r.status, r.correct = g.prediction, g.status, g.correct

    def close(self) -> None:
        if self._open is not None:
            self._open.close()
            self._open = None

    def __enter__(self) -> "Checker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["Checker"]

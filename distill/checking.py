"""One entry point that turns rationales of any thought into Outcomes.

CoT by answer extraction, PoT in the sandboxed executor, EoT with the equation solver.
Every stage that checks rationales (validate, generate, eval) goes through here.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

from solvers.answers import extract_answer, outcome_correct
from solvers.outcome import Outcome

from distill.records import THOUGHTS, InputError, Record


class Checker:
    """Checks batches of rationales of one thought; owns the executor pool for PoT."""

    def __init__(self, thought: str, *, timeout: float = 5.0, workers: int | None = None):
        if thought not in THOUGHTS:
            raise InputError(f"unknown thought {thought!r} (choose from {', '.join(THOUGHTS)})")
        self.thought = thought
        self.timeout = timeout
        self._executor = None
        if thought == "pot":
            from solvers.executor import Executor

            self._executor = Executor(workers=workers, timeout=timeout)

    def check(self, rationales: Sequence[str]) -> list[Outcome]:
        if self._executor is not None:
            return self._executor.run_many(list(rationales))
        one: Callable[[str], Outcome]
        if self.thought == "cot":
            one = extract_answer
        else:
            from solvers.equations import solve_eot

            one = lambda text: solve_eot(text, timeout=self.timeout)  # noqa: E731
        return [one(text) for text in rationales]

    def fill(self, records: Sequence[Record]) -> None:
        """Check the records' rationales and set their prediction, status and correct in place."""
        for r, outcome in zip(records, self.check([r.rationale or "" for r in records])):
            r.prediction, r.status, r.correct = outcome.prediction, str(outcome.status), outcome_correct(outcome, r.answer)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.close()
            self._executor = None

    def __enter__(self) -> "Checker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["Checker"]

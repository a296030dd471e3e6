"""Combine the thoughts of one (question, sample): fallback, cross-thought vote, oracle.

Fallback ("Plan, Verify and Switch"): the first thought, in the given order, whose rationale
produced a number (status ok). Vote: the most common answer over the thoughts that produced one;
ties go to the answer of the thought earliest in the fallback order. Oracle: any thought right.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from distill.evaluation.metrics import majority
from distill.records import Record


@dataclass(frozen=True)
class Pick:
    """A combined answer: the prediction, the thought it came from, and whether it is right."""

    prediction: float | int | str | None
    thought: str | None
    correct: bool | None

    @classmethod
    def of(cls, record: Record | None) -> "Pick":
        if record is None:
            return cls(None, None, False)
        return cls(record.prediction, record.thought, bool(record.correct))

    def to_dict(self) -> dict[str, object]:
        return {"prediction": self.prediction, "thought": self.thought, "correct": self.correct}


def _valid(record: Record | None) -> bool:
    return record is not None and record.status == "ok" and record.prediction is not None


def fallback(by_thought: Mapping[str, Record], order: Sequence[str]) -> Pick:
    return Pick.of(next((by_thought[t] for t in order if _valid(by_thought.get(t))), None))


def vote(by_thought: Mapping[str, Record], order: Sequence[str]) -> Pick:
    """`order` is the fallback order followed by any other thoughts (it breaks ties)."""
    records = [by_thought.get(t) for t in order]
    winner = majority([r.prediction if _valid(r) else None for r in records])  # type: ignore[union-attr]
    return Pick.of(None if winner is None else records[winner])


def oracle(by_thought: Mapping[str, Record]) -> bool:
    return any(bool(r.correct) for r in by_thought.values())

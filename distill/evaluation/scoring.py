"""From prediction `Record`s to items (one per question and sample) and to the metrics report."""
from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from distill.evaluation import combine
from distill.evaluation.metrics import ks_for, majority, mean, pass_at_k
from distill.records import BREAKDOWNS, Record

OVERALL = "overall"
MISSING = "missing"  # failure class of a thought with no prediction for an item


@dataclass
class Item:
    """One (question, sample) with each thought's record and the combined answers."""

    id: str
    source: str
    question: str
    answer: float | int | str | None
    sample: int
    thoughts: dict[str, Record]
    fallback: combine.Pick
    vote: combine.Pick | None
    oracle: bool
    groups: dict[str, object] = field(default_factory=dict)  # breakdown keys of the question (MATH: level, subject)

    def pick(self, method: str) -> tuple[object, bool]:
        """(prediction, correct) of a thought or a combination."""
        if method == "oracle":
            return None, self.oracle
        if method in ("fallback", "vote"):
            p = getattr(self, method)
            return p.prediction, bool(p.correct)
        r = self.thoughts.get(method)
        return (r.prediction, bool(r.correct)) if r is not None else (None, False)

    def to_dict(self) -> dict[str, Any]:
        row: dict[str, Any] = {"id": self.id, "source": self.source, "question": self.question,
                               "answer": self.answer, "sample": self.sample}
        row["thoughts"] = {
            t: {"rationale": r.rationale, "prediction": r.prediction, "status": r.status, "correct": r.correct}
            for t, r in self.thoughts.items()
        }
        row["fallback"] = self.fallback.to_dict()
        if self.vote is not None:
            row["vote"] = self.vote.to_dict()
        row["oracle"] = self.oracle
        row.update(self.groups)
        return row


def methods(thoughts: Sequence[str], with_vote: bool) -> list[str]:
    return [*thoughts, "fallback", *(["vote"] if with_vote else []), "oracle"]


def build_items(records: Iterable[Record], thoughts: Sequence[str], order: Sequence[str], with_vote: bool) -> list[Item]:
    """Group records by (source, id, sample) in first-seen order and combine the thoughts."""
    groups: dict[tuple[str, str, int], dict[str, Record]] = defaultdict(dict)
    for r in records:
        if r.thought in thoughts:
            groups[(r.source, r.id, r.sample)][r.thought] = r
    tie_order = [*order, *(t for t in thoughts if t not in order)]
    items = []
    for (source, rid, sample), by_thought in groups.items():
        first = next(iter(by_thought.values()))
        items.append(Item(
            rid, source, first.question, first.answer, sample, by_thought,
            combine.fallback(by_thought, order),
            combine.vote(by_thought, tie_order) if with_vote else None,
            combine.oracle(by_thought),
            {k: first.meta[k] for k in BREAKDOWNS if first.meta.get(k) is not None},
        ))
    return items


def _summary(items: list[Item], thoughts: Sequence[str], with_vote: bool) -> dict[str, Any]:
    """Metrics of one data set (or all): over questions with a gold answer."""
    per_question: dict[tuple[str, str], list[Item]] = defaultdict(list)
    for item in items:
        if item.answer is not None:
            per_question[(item.source, item.id)].append(item)
    for samples in per_question.values():
        samples.sort(key=lambda it: it.sample)
    n = min((len(s) for s in per_question.values()), default=0)
    out: dict[str, Any] = {
        "questions": len({(it.source, it.id) for it in items}),
        "scored": len(per_question),
        "samples": n,
        "accuracy": {},
    }
    names = methods(thoughts, with_vote)
    out["accuracy"] = _accuracy(list(per_question.values()), names)
    breakdown: dict[str, dict[str, list[list[Item]]]] = defaultdict(lambda: defaultdict(list))
    for samples in per_question.values():
        for key, value in samples[0].groups.items():
            breakdown[key][str(value)].append(samples)
    if breakdown:
        out["by"] = {key: {value: {"scored": len(group), "accuracy": _accuracy(group, names)}
                           for value, group in sorted(groups.items())} for key, groups in breakdown.items()}
    if n > 1:
        ks = ks_for(n)
        out["pass@k"] = {m: {str(k): mean([pass_at_k(len(s), sum(it.pick(m)[1] for it in s), k)
                                           for s in per_question.values()]) for k in ks} for m in names}
        out["pass_ratio@n"] = dict(out["accuracy"])
        out["maj@k"] = {m: {str(k): mean([_maj(s[:k], m) for s in per_question.values()]) for k in ks}
                        for m in names if m != "oracle"}
    out["failures"] = {t: dict(Counter(_failure_class(it, t) for it in items).most_common()) for t in thoughts}
    return out


def _accuracy(questions: list[list[Item]], names: Sequence[str]) -> dict[str, float | None]:
    """Mean over questions of c/n per method: accuracy when greedy; pass@1 and PassRatio@n with samples."""
    return {m: mean([sum(it.pick(m)[1] for it in s) / len(s) for s in questions]) for m in names}


def _maj(samples: list[Item], method: str) -> bool:
    picks = [it.pick(method) for it in samples]
    winner = majority([p for p, _ in picks])
    return winner is not None and picks[winner][1]


def _failure_class(item: Item, thought: str) -> str:
    r = item.thoughts.get(thought)
    if r is None:
        return MISSING
    if r.status != "ok":
        return r.status or MISSING
    return "no-gold" if r.correct is None else "correct" if r.correct else "wrong"


def summarize(items: list[Item], thoughts: Sequence[str], with_vote: bool) -> dict[str, Any]:
    """{source: metrics, ..., "overall": metrics}: the overall row pools every question."""
    by_source: dict[str, list[Item]] = defaultdict(list)
    for item in items:
        by_source[item.source].append(item)
    out = {source: _summary(group, thoughts, with_vote) for source, group in by_source.items()}
    out[OVERALL] = _summary(items, thoughts, with_vote)
    return out

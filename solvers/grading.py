"""The verdict on a checked rationale against its gold answer: prediction, status and correct.

A gold that is a number keeps the rule of solvers.answers exactly (GSM8K and the like: the
thought's own prediction and status, `outcome_correct`). A gold that is a string is a LaTeX answer
(MATH): the rationale's final answer (CoT: the `latex` its checker extracted; PoT: the exact SymPy
answer printed as LaTeX, else the number) is compared with solvers.mathans, mathematically and
under a per-answer time limit; the prediction is then the normalised answer (an int where it is
one, else a string) and the status the checker's (`ok`, `no-answer`, `unparsable`, `timeout`) or
the thought's own failure class when it produced no answer at all (`runtime`, `unsupported`, ...).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from solvers.answers import extract_answer, outcome_correct
from solvers.outcome import Number, Outcome, Status

# Failure classes that only say "no number": with a LaTeX gold the answer is looked for as LaTeX.
_NO_NUMBER = (Status.OK, Status.NO_ANSWER, Status.NON_NUMERIC)


@dataclass(frozen=True)
class Graded:
    prediction: Number | str | None
    status: str
    correct: bool | None


def is_latex_gold(gold: object) -> bool:
    return isinstance(gold, str)


def final_answer(outcome: Outcome) -> str | Number | None:
    """What a LaTeX gold is compared with (None: the rationale names no answer)."""
    if outcome.latex:
        return outcome.latex
    if outcome.exact is not None:
        from solvers.mathans.exact import exact_latex

        if (latex := exact_latex(outcome.exact)) is not None:
            return latex
    return outcome.prediction if outcome.is_ok else None


def cot_outcome(text: str) -> Outcome:
    """A chain of thought's answer: the number of solvers.answers.extract_answer (what numeric golds
    are compared with, unchanged) and the final LaTeX answer (`\\boxed{}`, `The answer is`, the last
    math span) for LaTeX golds."""
    from solvers.mathans import extract_final

    return replace(extract_answer(text), latex=extract_final(text) if isinstance(text, str) else None)


def _prediction(normalised: str) -> Number | str:
    """An integer answer as an int (so that reports and votes treat it as a number), else the string."""
    from solvers.mathans.numbers import parse_number

    value = parse_number(normalised)
    if value is not None and not value[1] and value[0].denominator == 1:
        return int(value[0])
    return normalised


def grade_many(outcomes: Sequence[Outcome], golds: Sequence[object], latex: Sequence[bool] | None = None,
               checker: object | None = None) -> list[Graded]:
    """The verdicts of `outcomes` against `golds`, in order. `latex[i]` marks an item whose answers
    are LaTeX although it has no gold (synthesised MATH-style questions): its prediction is the
    normalised answer. `checker` is a solvers.mathans.Checker (default: the shared one)."""
    out: list[Graded | None] = [None] * len(outcomes)
    pending: list[tuple[int, str | Number]] = []
    for i, (outcome, gold) in enumerate(zip(outcomes, golds, strict=True)):
        as_latex = is_latex_gold(gold) or (gold is None and bool(latex and latex[i]))
        if not as_latex:
            out[i] = Graded(outcome.prediction, str(outcome.status), outcome_correct(outcome, gold))
            continue
        answer = final_answer(outcome)
        if answer is None:
            status = Status.NO_ANSWER if outcome.status in _NO_NUMBER else outcome.status
            out[i] = Graded(None, str(status), None if gold is None else False)
        elif gold is None:
            from solvers.mathans import normalize

            out[i] = Graded(answer if not isinstance(answer, str) else _prediction(normalize(answer)), "ok", None)
        else:
            pending.append((i, answer))
    if pending:
        from solvers.mathans import default_checker

        verdicts = (checker or default_checker()).check_many([(a, golds[i]) for i, a in pending])  # type: ignore[attr-defined]
        for (i, answer), v in zip(pending, verdicts):
            prediction = answer if not isinstance(answer, str) else (_prediction(v.prediction) if v.prediction else None)
            out[i] = Graded(prediction, str(v.status), bool(v.equal))
    return out  # type: ignore[return-value]


def grade(outcome: Outcome, gold: object, latex: bool = False) -> Graded:
    return grade_many([outcome], [gold], [latex])[0]


__all__ = ["Graded", "cot_outcome", "final_answer", "grade", "grade_many", "is_latex_gold"]

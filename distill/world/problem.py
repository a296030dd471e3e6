"""A world problem: the question's facts, and the gold program (named steps) that answers it.

Facts are the question's sentences and the given numbers they state. Steps are named
computations over earlier names (Python syntax, `+ - * /` and parentheses). EoT-natural families
also carry their own equation system (`eot`), written over the given names and the unknowns
`x`, `y`; the renderer substitutes the given values.
"""
from __future__ import annotations

import ast
import operator
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

from distill.records import Record

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


@dataclass(frozen=True)
class Fact:
    sentence: str  # as the question states it
    givens: tuple[tuple[str, int], ...]  # (name, value) of each number it states


@dataclass(frozen=True)
class Step:
    name: str  # a descriptive Python identifier
    expr: str  # over earlier names, e.g. "packs * pens_per_pack"
    says: tuple[str, ...]  # CoT wordings; "{calc}" marks the arithmetic ("3 * 12 = 36")
    note: str  # EoT comment


class Stated:
    """What every world problem says: the question of its facts and ask, its id and its record
    (the dataclasses below and latex_problem.LatexProblem carry the fields)."""

    family: str
    facts: tuple[Fact, ...]
    ask: str
    answer: int | str
    split: str
    index: int
    seed: int

    @property
    def question(self) -> str:
        return " ".join([*(f.sentence for f in self.facts), self.ask])

    @property
    def givens(self) -> dict[str, int]:
        return {name: value for fact in self.facts for name, value in fact.givens}

    @property
    def id(self) -> str:
        return f"world:{self.split}/{self.index}" if self.seed == 0 else f"world:{self.split}/s{self.seed}-{self.index}"

    def to_record(self) -> Record:
        return Record(id=self.id, question=self.question, answer=self.answer, source=f"world:{self.split}",
                      meta={"family": self.family, "world_seed": self.seed})


@dataclass(frozen=True)
class Problem(Stated):
    family: str
    facts: tuple[Fact, ...]
    steps: tuple[Step, ...]
    ask: str  # the question sentence
    answer_name: str
    answer: int
    eot: tuple[tuple[str, str], ...] = ()  # (comment, equation) for EoT-natural families
    split: str = ""
    index: int = -1
    seed: int = 0

    def render(self, thought: str, variant: int = 0) -> str:
        """The gold rationale of a thought (`variant` picks among the CoT wordings)."""
        from distill.world.render import render

        return render(self, thought, variant=variant)

    def applies(self, thought: str) -> bool:
        """Whether the thought can state the answer (always, for one whole number)."""
        return True

    def error_kinds(self, thought: str) -> tuple[str, ...]:
        from distill.world.errors import kinds_for

        return kinds_for(self, thought)

    def inject(self, thought: str, kind: str, rng: random.Random, variant: int = 0) -> tuple[str, str]:
        """The rationale of `thought` with error `kind` (see errors.inject)."""
        from distill.world.errors import inject

        return inject(self, thought, kind, rng, variant)


@lru_cache(maxsize=4096)
def _parse(expr: str) -> ast.expr:
    return ast.parse(expr, mode="eval").body


def evaluate(expr: str, values: Mapping[str, Fraction], number: Callable[[int], Fraction] = Fraction) -> Fraction:
    """Exact value of a step expression (`number=int`: the value Python computes, floats and all);
    ZeroDivisionError propagates."""

    def ev(node: ast.expr) -> Fraction:
        if isinstance(node, ast.BinOp):
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.Name):
            return values[node.id]
        if isinstance(node, ast.Constant):
            return number(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        raise ValueError(f"unsupported expression {expr!r}")

    return ev(_parse(expr))


def names_in(expr: str) -> list[str]:
    return [n.id for n in ast.walk(_parse(expr)) if isinstance(n, ast.Name)]


def run(problem: Problem, slips: Mapping[str, Fraction] | None = None,
        number: Callable[[int], Fraction] = Fraction) -> dict[str, Fraction]:
    """Every name's value; `slips` replaces a step's result (carried through later steps);
    `number=int`: the values a Python program of the steps computes."""
    values = {name: number(v) for name, v in problem.givens.items()}
    for step in problem.steps:
        values[step.name] = evaluate(step.expr, values, number)
        if slips and step.name in slips:
            values[step.name] = slips[step.name]
    return values


def needed(problem: Problem) -> set[str]:
    """Names the answer depends on (itself included)."""
    exprs = {s.name: s.expr for s in problem.steps}
    out, todo = set(), [problem.answer_name]
    while todo:
        name = todo.pop()
        if name not in out:
            out.add(name)
            todo.extend(names_in(exprs[name]) if name in exprs else [])
    return out

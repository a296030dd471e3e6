"""What a family function writes with: draws numbers and words, states facts, adds steps.

Templates are `str.format` strings over the context (`who`, `he`, `He`, `his`, and whatever a
family sets with `context`) and the given numbers; a step's CoT wordings also use `{calc}`.
A draw that breaks a family's constraints (a non-integer or non-positive step, a failed
`require`) raises `Redraw`, and the generator draws again.
"""
from __future__ import annotations

import random
from collections.abc import Sequence
from fractions import Fraction
from typing import TypeVar

from distill.world.problem import Fact, Problem, Step, evaluate

T = TypeVar("T")

PEOPLE = [
    ("Maria", "she"), ("James", "he"), ("Aisha", "she"), ("Leo", "he"), ("Priya", "she"), ("Tom", "he"),
    ("Sofia", "she"), ("Omar", "he"), ("Mei", "she"), ("Carlos", "he"), ("Hannah", "she"), ("Kenji", "he"),
    ("Fatima", "she"), ("Lucas", "he"), ("Olivia", "she"), ("Noah", "he"), ("Zara", "she"), ("Ethan", "he"),
    ("Nina", "she"), ("Diego", "he"), ("Grace", "she"), ("Ravi", "he"), ("Elena", "she"), ("Sam", "he"),
    ("Angela", "she"), ("Marcus", "he"), ("Lily", "she"), ("Ben", "he"), ("Chloe", "she"), ("Ivan", "he"),
]


class Redraw(Exception):
    """The draw broke a constraint; draw again."""


class Builder:
    def __init__(self, rng: random.Random, family: str):
        self.rng, self.family = rng, family
        self.ctx: dict[str, str] = {}
        self.values: dict[str, Fraction] = {}
        self.facts: list[Fact] = []
        self.steps: list[Step] = []
        self.eot: list[tuple[str, str]] = []

    # -- draws
    def int(self, lo: int, hi: int, step: int = 1) -> int:
        return self.rng.randrange(lo, hi + 1, step)

    def pick(self, options: Sequence[T]) -> T:
        return self.rng.choice(options)

    def people(self, k: int = 1) -> None:
        """Sets who/he/He/his/himself (who2/he2/... for a second person)."""
        for i, (name, pron) in enumerate(self.rng.sample(PEOPLE, k)):
            suffix = "" if i == 0 else str(i + 1)
            self.ctx.update({f"who{suffix}": name, f"he{suffix}": pron, f"He{suffix}": pron.capitalize(),
                             f"his{suffix}": "her" if pron == "she" else "his",
                             f"himself{suffix}": "herself" if pron == "she" else "himself"})

    def context(self, **fields: str) -> None:
        self.ctx.update(fields)

    def require(self, condition: bool) -> None:
        if not condition:
            raise Redraw

    def _fill(self, template: str, **extra: object) -> str:
        return template.format(**self.ctx, **{k: int(v) for k, v in self.values.items()}, **extra)

    # -- the problem
    def fact(self, wordings: str | Sequence[str], **givens: int) -> None:
        """A sentence of the question stating the given numbers."""
        self.values.update({k: Fraction(v) for k, v in givens.items()})
        sentence = self._fill(self._one(wordings))
        self.facts.append(Fact(sentence, tuple(givens.items())))

    def step(self, name: str, expr: str, says: str | Sequence[str], note: str) -> int:
        """A named computation; returns its value (a positive integer, else Redraw)."""
        try:
            value = evaluate(expr, self.values)
        except ZeroDivisionError:
            raise Redraw from None
        self.require(value.denominator == 1 and value > 0)
        says = (says,) if isinstance(says, str) else tuple(says)
        note = self._fill(note)
        self.steps.append(Step(name, expr, tuple(self._fill(s, calc="{calc}") for s in says), note[0].upper() + note[1:]))
        self.values[name] = value
        return int(value)

    def equation(self, note: str, equation: str) -> None:
        """A line of the EoT system (EoT-natural families); given names stand for their values."""
        self.eot.append((self._fill(note), equation))

    def ask(self, name: str, wordings: str | Sequence[str]) -> Problem:
        return Problem(self.family, tuple(self.facts), tuple(self.steps), self._fill(self._one(wordings)), name,
                       int(self.values[name]), tuple(self.eot))

    def _one(self, wordings: str | Sequence[str]) -> str:
        return wordings if isinstance(wordings, str) else self.rng.choice(list(wordings))

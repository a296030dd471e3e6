"""Gold programs -> CoT, PoT, EoT and TIR rationales (the NOTES.md formats; TIR: distill/world/tir.py).

PoT and EoT are built as lines (EoT as comment blocks) so that the teacher's error injection can
edit them before they are joined.
"""
from __future__ import annotations

import random
import re
from collections.abc import Mapping
from fractions import Fraction

from distill.world.problem import Problem, run

_NAME = re.compile(r"\b[A-Za-z_]\w*\b")

Block = tuple[str, list[str]]  # an EoT comment and the equations under it


def fmt(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    return f"{float(value):.2f}".rstrip("0").rstrip(".")


def substitute(expr: str, values: Mapping[str, Fraction | int]) -> str:
    """`expr` with each known name replaced by its value."""
    return _NAME.sub(lambda m: fmt(Fraction(values[m.group()])) if m.group() in values else m.group(), expr)


def cot(problem: Problem, variant: int = 0, slips: Mapping[str, Fraction] | None = None,
        final: Fraction | None = None) -> str:
    """Steps in words with their arithmetic, then `The answer is N.`; `slips` fakes a step's
    result (carried through), `final` fakes the stated answer."""
    values = run(problem, slips)
    sentences = []
    for i, step in enumerate(problem.steps):
        calc = f"{substitute(step.expr, values)} = {fmt(values[step.name])}"
        sentences.append(step.says[(variant >> i) % len(step.says)].format(calc=calc))
    answer = values[problem.answer_name] if final is None else final
    return " ".join([*sentences, f"The answer is {fmt(answer)}."])


def pot_lines(problem: Problem) -> list[str]:
    lines = [f"{name} = {value}" for name, value in problem.givens.items()]
    lines += [f"{step.name} = {step.expr}" for step in problem.steps]
    return [*lines, f"ans = {problem.answer_name}"]


def eot_blocks(problem: Problem) -> list[Block]:
    if problem.eot:
        givens = problem.givens
        blocks = [(note, [substitute(eq, givens)]) for note, eq in problem.eot]
    else:
        blocks = [(fact.sentence.rstrip("."), [f"{n} = {v}" for n, v in fact.givens]) for fact in problem.facts]
        blocks += [(step.note, [f"{step.name} = {step.expr}"]) for step in problem.steps]
    return [*blocks, ask_block(problem)]


def ask_block(problem: Problem) -> Block:
    return f"{problem.ask} The answer is {problem.answer_name}", [f"ans = {problem.answer_name}"]


def join_eot(blocks: list[Block]) -> str:
    return "\n".join(line for note, eqs in blocks for line in (f"% {note}:", *eqs))


def render(problem: Problem, thought: str, variant: int = 0) -> str:
    if thought == "cot":
        return cot(problem, variant)
    if thought == "pot":
        return "\n".join(pot_lines(problem))
    if thought == "eot":
        return join_eot(eot_blocks(problem))
    if thought == "tir":
        from distill.world.tir import plan  # (it renders with this module's helpers)

        return plan(problem, None, random.Random(variant), variant).text
    raise ValueError(f"unknown thought {thought!r}")

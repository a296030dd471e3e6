"""Faulty rationales: the mistakes the simulated teacher makes, each one changing the answer.

Value errors (a misread given, a wrong variable or operator, an arithmetic slip, a wrong final
statement) are checked against the gold program: a draw whose faulty answer still equals the gold
is discarded and another is drawn, so every injected error is a real one. Form errors (syntax, a
missing `ans`, an under-determined or contradictory system) make the checkers fail outright.
"""
from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from fractions import Fraction

from distill.world.problem import Fact, Problem, Step, needed, run
from distill.world.render import Block, cot, eot_blocks, join_eot, pot_lines, substitute
from solvers.answers import is_correct

KINDS = {
    "cot": ("arithmetic", "misread", "final"),
    "pot": ("misread", "wrong_variable", "operator", "syntax", "missing_ans"),
    "eot": ("misread", "wrong_variable", "operator", "under_determined", "unsolvable", "syntax", "missing_ans"),
    "tir": ("fabricated_output", "misread", "wrong_variable", "operator", "final"),  # written by distill.world.tir
}
_FORWARD_ONLY = {"wrong_variable", "operator"}  # edit step expressions, which EoT-natural systems do not show
_FALLBACK = {"cot": "final", "pot": "syntax", "eot": "syntax"}  # never harmless, always applicable
ATTEMPTS = 20
_OP = re.compile(r" ([-+*/]) ")
_SWAP = {"+": "-", "-": "+", "*": "/", "/": "*"}
_INTRO = re.compile(r"^\w+ = [xy]$")


def kinds_for(problem: Problem, thought: str) -> tuple[str, ...]:
    return tuple(k for k in KINDS[thought] if not (problem.eot and thought == "eot" and k in _FORWARD_ONLY))


def _wrong(problem: Problem, slips: Mapping[str, Fraction] | None = None) -> bool:
    """Whether the (edited) program's answer differs from the gold one."""
    try:
        value = run(problem, slips)[problem.answer_name]
    except ZeroDivisionError:
        return False
    return not is_correct(float(value), problem.answer)


def _nearby(rng: random.Random, value: int | Fraction) -> Fraction:
    return Fraction(value) + rng.choice([-10, -3, -2, -1, 1, 2, 3, 10])


# -- value errors: an edited program (or slips) whose answer is wrong; None when the draw is harmless
def _misread(p: Problem, rng: random.Random) -> Problem | None:
    name = rng.choice(sorted(set(p.givens) & needed(p)))
    value = _nearby(rng, p.givens[name])
    if value <= 0:
        return None
    facts = tuple(Fact(f.sentence, tuple((n, int(value) if n == name else v) for n, v in f.givens)) for f in p.facts)
    edited = replace(p, facts=facts)
    return edited if _wrong(edited) else None


def _edit_step(p: Problem, rng: random.Random, edit: Callable[[Step, list[str]], str | None]) -> Problem | None:
    i = rng.choice([i for i, s in enumerate(p.steps) if s.name in needed(p)])
    step = p.steps[i]
    expr = edit(step, [*p.givens, *(s.name for s in p.steps[:i])])
    if expr is None:
        return None
    edited = replace(p, steps=(*p.steps[:i], replace(step, expr=expr), *p.steps[i + 1:]))
    return edited if _wrong(edited) else None


def _wrong_variable(p: Problem, rng: random.Random) -> Problem | None:
    def edit(step: Step, defined: list[str]) -> str | None:
        names = re.findall(r"\b[A-Za-z_]\w*\b", step.expr)
        old = rng.choice(names)
        new = rng.choice([n for n in defined if n != old] or [old])
        return re.sub(rf"\b{old}\b", new, step.expr, count=1) if new != old else None

    return _edit_step(p, rng, edit)


def _operator(p: Problem, rng: random.Random) -> Problem | None:
    def edit(step: Step, defined: list[str]) -> str | None:
        ops = list(_OP.finditer(step.expr))
        if not ops:
            return None
        m = rng.choice(ops)
        return f"{step.expr[:m.start(1)]}{_SWAP[m.group(1)]}{step.expr[m.end(1):]}"

    return _edit_step(p, rng, edit)


def _slip(p: Problem, rng: random.Random) -> dict[str, Fraction] | None:
    values = run(p)
    name = rng.choice([s.name for s in p.steps if s.name in needed(p)])
    slips = {name: _nearby(rng, values[name])}
    return slips if slips[name] > 0 and _wrong(p, slips) else None


def retry(draw: Callable[[], object | None]) -> object | None:
    for _ in range(ATTEMPTS):
        if (found := draw()) is not None:
            return found
    return None


EDITS = {"misread": _misread, "wrong_variable": _wrong_variable, "operator": _operator}


def edited(problem: Problem, kind: str, rng: random.Random) -> Problem | None:
    """The problem with a value error of `kind` (one of `EDITS`) in its program; None where every
    draw was harmless."""
    found = retry(lambda: EDITS[kind](problem, rng))
    return found if isinstance(found, Problem) else None


# -- form errors on rendered lines
def break_line(line: str, rng: random.Random) -> str:
    name, _, expr = line.partition(" = ")
    return rng.choice([f"{name} = ({expr}", f"{name} = {expr} +", f"{name} {expr}"])


def _needed_steps(p: Problem) -> set[str]:
    return {s.name for s in p.steps if s.name in needed(p)}


def _eot_targets(p: Problem, blocks: list[Block]) -> list[tuple[int, int]]:
    """(block, equation) positions whose loss leaves the answer undetermined."""
    if p.eot:
        return [(b, 0) for b, (_, eqs) in enumerate(blocks[:-1]) if not _INTRO.match(eqs[0])]
    keep = needed(p)
    return [(b, e) for b, (_, eqs) in enumerate(blocks[:-1]) for e, eq in enumerate(eqs) if eq.split(" = ")[0] in keep]


def _contradiction(p: Problem, rng: random.Random) -> Block:
    shift = rng.choice([1, 2, 3, 5, 10])
    if not p.eot:
        last = next(s for s in p.steps if s.name == p.answer_name)
        return f"Check: {last.note.lower()}", [f"{last.expr} = {p.answer + shift}"]
    givens = p.givens
    totals = [(lhs, rhs) for _, eq in p.eot for lhs, _, rhs in [eq.partition(" = ")] if rhs in givens]
    if totals:
        lhs, rhs = rng.choice(totals)
        return "Check the total", [f"{substitute(lhs, givens)} = {givens[rhs] + shift}"]
    return "Check the answer", [f"2 * {p.answer_name} = {2 * p.answer + shift}"]


def _pot_form(p: Problem, kind: str, rng: random.Random) -> str:
    lines = pot_lines(p)
    if kind == "missing_ans":
        lines[-1] = lines[-1].replace("ans =", rng.choice(["result =", "answer ="]), 1)
    else:  # syntax
        i = rng.choice([i for i, line in enumerate(lines) if line.split(" = ")[0] in _needed_steps(p)])
        lines[i] = break_line(lines[i], rng)
    return "\n".join(lines)


def _eot_form(p: Problem, kind: str, rng: random.Random) -> str:
    blocks = eot_blocks(p)
    if kind == "missing_ans":
        blocks.pop()
    elif kind == "unsolvable":
        blocks.insert(len(blocks) - 1, _contradiction(p, rng))
    else:
        break_equation(blocks, rng.choice(_eot_targets(p, blocks)), kind, rng)
    return join_eot(blocks)


def break_equation(blocks: list[Block], at: tuple[int, int], kind: str, rng: random.Random) -> None:
    """In place: equation `at` (block, line) made a syntax error, or (`under_determined`) left out."""
    b, e = at
    note, eqs = blocks[b]
    if kind == "syntax":
        blocks[b] = (note, [*eqs[:e], break_line(eqs[e], rng), *eqs[e + 1:]])
    elif len(eqs) > 1:  # under-determined: a needed equation is left out
        blocks[b] = (note, eqs[:e] + eqs[e + 1:])
    else:
        del blocks[b]


def inject(problem: Problem, thought: str, kind: str, rng: random.Random, variant: int = 0) -> tuple[str, str]:
    """The rationale of `thought` with error `kind`, and the kind actually injected (a value error
    that cannot be made harmful on this problem gives way to the thought's fallback kind)."""
    if kind in EDITS:
        faulty = edited(problem, kind, rng)
        if faulty is not None:
            return (cot(faulty, variant) if thought == "cot" else faulty.render(thought)), kind
        kind = _FALLBACK[thought]
    if kind == "arithmetic":
        slips = retry(lambda: _slip(problem, rng))
        if isinstance(slips, dict):
            return cot(problem, variant, slips), kind
        kind = "final"
    if kind == "final":
        values = run(problem)
        wrong = sorted({v for v in values.values() if not is_correct(float(v), problem.answer)})
        return cot(problem, variant, final=rng.choice(wrong) if wrong else _nearby(rng, problem.answer)), kind
    if thought == "pot":
        return _pot_form(problem, kind, rng), kind
    return _eot_form(problem, kind, rng), kind

"""Tool-integrated traces of world problems (ToRA's format), as the simulated teacher writes them.

A `Plan` is the whole trace the teacher means to write for one sample: turns of reasoning with a
code cell each and the output the teacher expects of it (what Python prints for the cell: the
world program run with Python's own arithmetic, `run(number=int)`), then a final text with the
answer in `\\boxed{}`. The teacher writes it turn by turn (`Plan.continuation`): it stops after a
cell where the request's stop sequences hold "```output", and goes on from a prefix that holds the
real outputs. Clean traces now and then hold a cell that raises `NameError` (a given used before it
is defined) and its fix in the next cell, as real ones do. Injected errors (`errors.KINDS["tir"]`):

- `fabricated_output`: at one cell the teacher ignores the stop and writes the output itself, a
  wrong one: it carries the made-up value on (hard-coded in the next cell, or as the answer), or
  goes on as if nothing happened (the answer stays right: only the output check catches it), or
  the cell has a bug and the teacher hides the error behind the number it expected.
- `misread`, `wrong_variable`, `operator`: the program is wrong (real outputs, a wrong answer).
- `final`: the last sentence states another number than the code found.
"""
from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import TYPE_CHECKING

from distill.world.errors import EDITS, edited
from distill.world.problem import Problem, Step, names_in, run
from distill.world.render import fmt
from solvers.tir import STOP, Turn, parse, render

FABRICATIONS = ("carried", "silent", "hidden_error")
ERROR_FIX = 0.15  # share of clean traces with a NameError cell and its fix
_OPENERS = ("Let me work this out with Python.", "I'll compute it step by step in code.",
            "We can solve this by running a little code.")
_ANSWER = ("The answer is \\boxed{{{}}}.", "So the answer is $\\boxed{{{}}}$.", "Therefore the final answer is \\boxed{{{}}}.")

Number = int | float

if TYPE_CHECKING:
    from distill.world.latex_problem import LatexProblem


@dataclass(frozen=True)
class Plan:
    turns: tuple[Turn, ...]  # the last one holds the final text (no code)
    fabricated: frozenset[int]  # cells whose output the teacher writes itself, ignoring the stop
    kind: str | None  # the injected error, None for a clean trace

    @property
    def text(self) -> str:
        """The whole trace with the outputs the teacher expects (what one request without the
        output stop writes)."""
        return render(list(self.turns))

    def continuation(self, prefix: str, stop: Sequence[str] | None) -> str:
        """What the teacher writes after `prefix` (the trace so far, real outputs appended): the
        next turns, up to a cell left for the runtime to run when `stop` holds the output marker."""
        done = sum(t.code is not None and t.output is not None for t in parse(prefix))
        honour = STOP in (stop or ())
        out = []
        for i, turn in enumerate(self.turns[done:], done):
            if turn.code is not None and honour and i not in self.fabricated:
                out.append(render([replace(turn, output=None)]))
                break
            out.append(render([turn]))
        return "".join(out)


def _show(rng: random.Random, step: Step) -> tuple[str, str]:
    """The line that shows a cell's result, and the format of what it prints."""
    style = rng.randrange(3)
    if style == 0:
        return f"print({step.name})", "{}"
    if style == 1:
        return step.name, "{}"  # a bare last expression: the notebook displays its repr
    label = step.note.replace('"', "'").replace("{", "(").replace("}", ")")
    return f'print(f"{label}: {{{step.name}}}")', label + ": {}"


def _chunks(steps: Sequence[Step], rng: random.Random) -> list[list[Step]]:
    """The steps cut into one to three runs of consecutive steps, one per cell."""
    count = rng.randint(1, min(3, len(steps)))
    cuts = sorted(rng.sample(range(1, len(steps)), count - 1))
    return [list(steps[a:b]) for a, b in zip([0, *cuts], [*cuts, len(steps)])]


def _fake(rng: random.Random, value: Number) -> Number:
    """A number an inventing writer puts in place of `value`: near it, never equal to it."""
    while True:
        fake = value + rng.choice([-10, -3, -2, -1, 1, 2, 3, 10, value, 9 * value])
        if fake > 0 and not math.isclose(fake, value, rel_tol=1e-4):
            return type(value)(fake)


def plan(problem: Problem, kind: str | None, rng: random.Random, variant: int = 0) -> Plan:
    """The trace of `problem` with the injected error `kind` (None: a correct trace)."""
    program = problem
    if kind in EDITS:
        program = edited(problem, kind, rng) or problem
        kind = kind if program is not problem else "final"
    givens = program.givens
    chunks = _chunks(program.steps, rng)
    if chunks[-1][-1].name != program.answer_name:  # the last cell shows the answer
        chunks[-1].append(next(s for s in program.steps if s.name == program.answer_name))
    believed = run(program, number=int)  # what the teacher thinks each name holds
    fabricated, how = -1, ""
    if kind == "fabricated_output":
        fabricated, how = rng.randrange(len(chunks)), rng.choice(FABRICATIONS)
    fix_at = rng.randrange(len(chunks)) if kind is None and rng.random() < ERROR_FIX else -1

    turns: list[Turn] = []
    defined: set[str] = set()
    text = f"{rng.choice(_OPENERS)} First: {chunks[0][0].note}.\n"
    hard_coded: list[str] = []
    for i, chunk in enumerate(chunks):
        wanted = [n for s in chunk for n in names_in(s.expr) if n in givens and n not in defined]
        given_lines = [f"{n} = {givens[n]}" for n in dict.fromkeys(wanted)]
        step_lines = [f"{s.name} = {s.expr}" for s in chunk]
        show, printed = _show(rng, chunk[-1])
        last = chunk[-1].name
        output = printed.format(believed[last])
        broken = (i == fix_at or (i == fabricated and how == "hidden_error")) and given_lines
        if broken:  # a given left out: the first step that needs it raises NameError
            missing = rng.randrange(len(given_lines))
            lines = [*hard_coded, *given_lines[:missing], *given_lines[missing + 1:], *step_lines, show]
            name = given_lines[missing].split(" = ")[0]
            if i == fix_at:
                turns.append(Turn(text, "\n".join(lines), f"NameError: name '{name}' is not defined"))
                text = f"I forgot to define `{name}`. Adding it and running the cell again:\n"
                lines = [given_lines[missing], *step_lines, show]
        else:
            lines = [*hard_coded, *given_lines, *step_lines, show]
        hard_coded = []
        if i == fabricated and not (how == "hidden_error" and broken):
            fake = _fake(rng, believed[last])
            output = printed.format(fake)
            if how == "carried":
                believed = run(program, {last: fake}, number=int)  # type: ignore[dict-item]
                hard_coded = [f"{last} = {fake}"]
        turns.append(Turn(text, "\n".join(lines), output))
        defined.update(wanted)
        says = chunk[-1].says[(variant >> i) % len(chunk[-1].says)].format(calc=fmt(Fraction(believed[last])))
        text = f"{says}\n" if i + 1 == len(chunks) else f"{says} Next: {chunks[i + 1][0].note}.\n"
    answer = believed[program.answer_name]
    if kind == "final":
        wrong = sorted({v for v in believed.values() if not math.isclose(v, answer, rel_tol=1e-3)})
        answer = rng.choice(wrong) if wrong else _fake(rng, answer)
    final = _ANSWER[variant % len(_ANSWER)].format(fmt(Fraction(answer)))
    turns.append(Turn(text.rstrip("\n") + " " + final))
    return Plan(tuple(turns), frozenset([fabricated] if fabricated >= 0 else []), kind)


def latex_plan(problem: "LatexProblem", kind: str | None, rng: random.Random, variant: int = 0) -> Plan:
    """The trace of a problem whose answer is LaTeX (`distill.world.latex_problem`): one SymPy cell
    that prints the exact answer (as SymPy prints it: `11/21`, `5*sqrt(5)`, `(-7/6, 8/3)`), then the
    answer boxed in LaTeX. The one error injected here is a fabricated output, carried to the answer."""
    import sympy

    from distill.world.latex_problem import tex

    value = shown = problem.value
    if kind is not None:
        kind = "fabricated_output"
        shown = sympy.Tuple(*(a + 1 for a in value.args)) if isinstance(value, sympy.Tuple) else value + 1
    code = "\n".join([*problem.pot_lines(), "print(ans)"])
    turns = (Turn(f"{_OPENERS[variant % len(_OPENERS)]} SymPy keeps the answer exact.\n", code, str(shown)),
             Turn("The output is the exact value. " + _ANSWER[variant % len(_ANSWER)].format(tex(shown))))
    return Plan(turns, frozenset([0] if kind else []), kind)


__all__ = ["FABRICATIONS", "Plan", "latex_plan", "plan"]

"""World problems whose gold answer is LaTeX (a fraction, a radical, an ordered pair), and how the
simulated teacher writes (and breaks) their rationales.

Like `Problem`, a `LatexProblem` is the question's facts plus named steps, but its steps are SymPy
expressions (`Rational(red, total)`, `sqrt(s)`, `Tuple(x, y)`) evaluated exactly by our own small
evaluator (never `eval`), and its gold is a LaTeX string (`\\frac{3}{7}`, `2\\sqrt{5}`, `(2, -3)`),
so every stage compares its answers through the LaTeX path (solvers.grading). Rationales:

* CoT: the steps with their arithmetic in `$...$`, ending in `\\boxed{}`; the boxed answer is one
  of several equal writings (`\\dfrac`, `a/b`, the unreduced fraction, `\\sqrt{20}` for `2\\sqrt{5}`,
  a terminating decimal where the question does not ask for an exact form).
* PoT: straight-line Python that imports what it uses from sympy and assigns `ans`, so the
  sandbox returns the exact answer (its srepr) and the checker compares it with the gold.
* EoT: the same steps as equations (`Rational(a, b)` written `a / b`); a tuple answer cannot be
  one value of `ans`, so its system ends `ans = Tuple(x, y)`, which the solver refuses as
  `unsupported` (`applies("eot")` is False, and the teacher injects no error there).

Injected errors (the kinds of errors.KINDS) are verified to change the answer, as for `Problem`.
"""
from __future__ import annotations

import ast
import operator
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from functools import lru_cache

import sympy

from distill.world.errors import ATTEMPTS, KINDS, break_equation, break_line, retry
from distill.world.problem import Fact, Stated
from distill.world.render import Block, ask_block, join_eot

_CALLS: dict[str, Callable[..., sympy.Basic]] = {"Rational": sympy.Rational, "sqrt": sympy.sqrt, "Tuple": sympy.Tuple}
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.Pow: operator.pow}
_SWAP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult}
_SHIFTS = (-3, -2, -1, 1, 2, 3)
_FINAL = ("The answer is $\\boxed{{{0}}}$.", "So the answer is $\\boxed{{{0}}}$.", "Hence $\\boxed{{{0}}}$.")

Values = dict[str, sympy.Basic]


class Invalid(ValueError):
    """A value that is no answer (a zero denominator, the root of a negative number)."""


@dataclass(frozen=True)
class LatexStep:
    name: str
    expr: str  # a SymPy expression over earlier names (Python syntax): PoT writes it as is
    says: tuple[str, ...]  # CoT wordings; "{calc}" marks the arithmetic, in LaTeX
    note: str  # EoT comment


@lru_cache(maxsize=4096)
def _parse(expr: str) -> ast.expr:
    return ast.parse(expr, mode="eval").body


def _valid(value: sympy.Basic) -> sympy.Basic:
    parts = value.args if isinstance(value, sympy.Tuple) else (value,)
    if not all(p.is_real and p.is_finite for p in parts):
        raise Invalid(str(value))
    return value


def evaluate(expr: str, values: Mapping[str, sympy.Basic]) -> sympy.Basic:
    """The exact value of a step expression (Invalid when it has none)."""

    def ev(node: ast.expr) -> sympy.Basic:
        if isinstance(node, ast.BinOp):
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Div) and right == 0:
                raise Invalid("division by zero")
            return _BINARY[type(node.op)](left, right)
        if isinstance(node, ast.Name):
            return values[node.id]
        if isinstance(node, ast.Constant):
            return sympy.Integer(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            args = [ev(a) for a in node.args]
            if node.func.id == "Rational" and args[1] == 0:
                raise Invalid("division by zero")
            return _CALLS[node.func.id](*args)
        raise ValueError(f"unsupported expression {expr!r}")

    return _valid(ev(_parse(expr)))


# -- LaTeX
def tex(value: sympy.Basic, dfrac: bool = False) -> str:
    """A value in MATH's style: `\\frac{3}{7}`, `-\\frac{1}{2}`, `2\\sqrt{5}`, `(2, -3)`."""
    if isinstance(value, sympy.Tuple):
        return "(" + ", ".join(tex(v, dfrac) for v in value.args) + ")"
    if value.is_Integer:
        return str(value)
    if value.is_Rational:
        sign = "-" if value < 0 else ""
        return f"{sign}\\{'d' if dfrac else ''}frac{{{abs(value.p)}}}{{{value.q}}}"
    coeff, rest = value.as_coeff_Mul()
    if rest.is_Pow and rest.exp == sympy.Rational(1, 2) and coeff.is_Integer:
        return ("-" if coeff < 0 else "") + ("" if abs(coeff) == 1 else str(abs(coeff))) + f"\\sqrt{{{rest.base}}}"
    return sympy.latex(value)


def _atom(text: str) -> str:
    return f"({text})" if text.startswith("-") or " " in text else text


def show(expr: str, values: Mapping[str, sympy.Basic]) -> str:
    """An expression in LaTeX with each name replaced by its value (`\\frac{6}{6 + 8}`)."""

    def sh(node: ast.expr) -> str:
        if isinstance(node, ast.Name):
            return tex(values[node.id])
        if isinstance(node, ast.Constant):
            return str(node.value)
        if isinstance(node, ast.UnaryOp):
            return "-" + _atom(sh(node.operand))
        if isinstance(node, ast.Call):
            args = [sh(a) for a in node.args]
            name = node.func.id  # type: ignore[attr-defined]
            if name == "Rational":
                return f"\\frac{{{args[0]}}}{{{args[1]}}}"
            return f"\\sqrt{{{args[0]}}}" if name == "sqrt" else "(" + ", ".join(args) + ")"  # a Tuple
        assert isinstance(node, ast.BinOp)
        left, right = sh(node.left), sh(node.right)
        if isinstance(node.op, ast.Div):
            return f"\\frac{{{left}}}{{{right}}}"
        if isinstance(node.op, ast.Pow):
            return f"{_atom(left)}^{{{right}}}"
        if isinstance(node.op, ast.Mult):
            return f"{_atom(left)} \\cdot {_atom(right)}"
        right = f"({right})" if right.startswith("-") else right
        return f"{left} {'+' if isinstance(node.op, ast.Add) else '-'} {right}"

    return sh(_parse(expr))


def _terminating(value: sympy.Basic) -> bool:
    q = int(value.q)
    for p in (2, 5):
        while q % p == 0:
            q //= p
    return q == 1


def forms(value: sympy.Basic, shown: str, exact: bool) -> list[str]:
    """Equal writings of an answer: the canonical one first, then `\\dfrac`, `a/b`, the form the
    last step showed (`\\frac{6}{14}`, `\\sqrt{20}`), a decimal when the question allows one."""
    out = [tex(value), tex(value, dfrac=True)]
    if isinstance(value, sympy.Tuple):
        out += [out[0].replace(", ", ","), f"\\left({out[0][1:-1]}\\right)"]
    elif value.is_Rational and not value.is_Integer:
        out.append(f"{value.p}/{value.q}")
        if not exact and _terminating(value):
            out.append(str(sympy.Float(value, 12)).rstrip("0"))
    elif not value.is_Rational:
        out.append(out[0].replace("\\sqrt", " \\sqrt").strip())
    out.append(shown)
    return list(dict.fromkeys(out))


def differs(a: sympy.Basic, b: sympy.Basic) -> bool:
    """Whether two answers differ beyond the checker's tolerance (solvers.mathans: 1e-6 relative)."""
    if isinstance(a, sympy.Tuple) or isinstance(b, sympy.Tuple):
        return not (isinstance(a, sympy.Tuple) and isinstance(b, sympy.Tuple) and len(a) == len(b)) or any(
            differs(x, y) for x, y in zip(a.args, b.args))
    x, y = float(a), float(b)
    return abs(x - y) > 1e-6 * max(1.0, abs(y))


# -- the problem
@dataclass(frozen=True)
class LatexProblem(Stated):
    family: str
    facts: tuple[Fact, ...]
    steps: tuple[LatexStep, ...]
    ask: str
    answer_name: str
    answer: str  # the gold, in LaTeX
    exact: bool = True  # the question asks for an exact form (no decimal answer)
    split: str = ""
    index: int = -1
    seed: int = 0

    def run(self, slips: Mapping[str, sympy.Basic] | None = None) -> Values:
        """Every name's exact value; `slips` replaces a step's result (carried through later steps)."""
        values: Values = {name: sympy.Integer(v) for name, v in self.givens.items()}
        for step in self.steps:
            values[step.name] = evaluate(step.expr, values)
            if slips and step.name in slips:
                values[step.name] = slips[step.name]
        return values

    @property
    def value(self) -> sympy.Basic:
        return self.run()[self.answer_name]

    def applies(self, thought: str) -> bool:
        """Whether the thought can state the answer: CoT, PoT and TIR always, EoT one value (not a tuple)."""
        return thought in ("cot", "pot", "tir") or (thought == "eot" and not isinstance(self.value, sympy.Tuple))

    def needed(self) -> set[str]:
        """Names the answer depends on (itself included)."""
        exprs = {s.name: s.expr for s in self.steps}
        out, todo = set(), [self.answer_name]
        while todo:
            name = todo.pop()
            if name not in out and name not in _CALLS:
                out.add(name)
                if name in exprs:
                    todo.extend(n.id for n in ast.walk(_parse(exprs[name])) if isinstance(n, ast.Name))
        return out

    # -- rendering
    def cot(self, variant: int = 0, slips: Mapping[str, sympy.Basic] | None = None,
            final: sympy.Basic | None = None) -> str:
        values = self.run(slips)
        sentences = []
        for i, step in enumerate(self.steps):
            shown, result = show(step.expr, values), tex(values[step.name])
            calc = f"${result}$" if shown == result else f"${shown} = {result}$"
            sentences.append(step.says[(variant >> i) % len(step.says)].format(calc=calc))
        answer = values[self.answer_name] if final is None else final
        last = next(s for s in self.steps if s.name == self.answer_name)
        shown = show(last.expr, values) if final is None and not slips else tex(answer)  # a slip shows its own result
        options = forms(answer, shown, self.exact)
        n = len(self.steps)
        boxed = options[(variant >> n) % len(options)]
        return " ".join([*sentences, _FINAL[(variant >> (n + 3)) % len(_FINAL)].format(boxed)])

    def pot_lines(self) -> list[str]:
        used = sorted({n.func.id for s in self.steps for n in ast.walk(_parse(s.expr))  # type: ignore[attr-defined]
                       if isinstance(n, ast.Call)})
        lines = [f"from sympy import {', '.join(used)}"] if used else []
        lines += [f"{name} = {value}" for name, value in self.givens.items()]
        lines += [f"{step.name} = {step.expr}" for step in self.steps]
        return [*lines, f"ans = {self.answer_name}"]

    def eot_blocks(self) -> list[Block]:
        blocks = [(fact.sentence.rstrip("."), [f"{n} = {v}" for n, v in fact.givens]) for fact in self.facts]
        blocks += [(step.note, [f"{step.name} = {_equation(step.expr)}"]) for step in self.steps]
        return [*blocks, ask_block(self)]  # type: ignore[arg-type]

    def render(self, thought: str, variant: int = 0) -> str:
        if thought == "cot":
            return self.cot(variant)
        if thought == "pot":
            return "\n".join(self.pot_lines())
        if thought == "eot":
            return join_eot(self.eot_blocks())
        raise ValueError(f"unknown thought {thought!r}")

    # -- injected errors
    def error_kinds(self, thought: str) -> tuple[str, ...]:
        return KINDS[thought] if self.applies(thought) else ()

    def inject(self, thought: str, kind: str, rng: random.Random, variant: int = 0) -> tuple[str, str]:
        """The rationale of `thought` with error `kind`, and the kind injected (a value error that
        cannot be made harmful on this problem gives way to a form error, CoT's to `final`)."""
        edit = {"misread": _misread, "wrong_variable": _wrong_variable, "operator": _operator}.get(kind)
        if edit is not None:
            edited = retry(lambda: edit(self, rng))
            if isinstance(edited, LatexProblem):
                return (edited.cot(variant) if thought == "cot" else edited.render(thought)), kind
            kind = "final" if thought == "cot" else "syntax"
        if kind == "arithmetic":
            slips = retry(lambda: _slip(self, rng))
            if isinstance(slips, dict):
                return self.cot(variant, slips), kind
            kind = "final"
        if kind == "final":
            return self.cot(variant, final=_wrong_final(self, rng)), kind
        if thought == "pot":
            return _pot_form(self, kind, rng), kind
        return _eot_form(self, kind, rng), kind


class _ToEquation(ast.NodeTransformer):
    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.func, ast.Name) and node.func.id == "Rational":
            return ast.BinOp(node.args[0], ast.Div(), node.args[1])
        return node


@lru_cache(maxsize=4096)
def _equation(expr: str) -> str:
    """A step's right side as EoT writes it: `Rational(a, b)` is `a / b` (the solver is exact)."""
    return ast.unparse(_ToEquation().visit(ast.parse(expr, mode="eval")))


# -- value errors: an edited problem (or slips) whose answer is wrong; None when the draw is harmless
def _wrong(p: LatexProblem, gold: sympy.Basic, slips: Mapping[str, sympy.Basic] | None = None) -> bool:
    try:
        return differs(p.run(slips)[p.answer_name], gold)
    except (Invalid, TypeError):
        return False


def _misread(p: LatexProblem, rng: random.Random) -> LatexProblem | None:
    name = rng.choice(sorted(set(p.givens) & p.needed()))
    value = p.givens[name] + rng.choice(_SHIFTS)
    facts = tuple(Fact(f.sentence, tuple((n, value if n == name else v) for n, v in f.givens)) for f in p.facts)
    edited = replace(p, facts=facts)
    return edited if _wrong(edited, p.value) else None


def _edit_step(p: LatexProblem, rng: random.Random, edit: Callable[[ast.expr, list[str]], ast.expr | None]) -> LatexProblem | None:
    i = rng.choice([i for i, s in enumerate(p.steps) if s.name in p.needed()])
    step = p.steps[i]
    tree = edit(ast.parse(step.expr, mode="eval").body, [*p.givens, *(s.name for s in p.steps[:i])])
    if tree is None:
        return None
    edited = replace(p, steps=(*p.steps[:i], replace(step, expr=ast.unparse(tree)), *p.steps[i + 1:]))
    return edited if _wrong(edited, p.value) else None


def _wrong_variable(p: LatexProblem, rng: random.Random) -> LatexProblem | None:
    def edit(tree: ast.expr, defined: list[str]) -> ast.expr | None:
        names = [n for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id not in _CALLS]
        old = rng.choice(names)
        new = rng.choice([n for n in defined if n != old.id] or [old.id])
        if new == old.id:
            return None
        old.id = new
        return tree

    return _edit_step(p, rng, edit)


def _operator(p: LatexProblem, rng: random.Random) -> LatexProblem | None:
    def edit(tree: ast.expr, defined: list[str]) -> ast.expr | None:
        ops = [n for n in ast.walk(tree) if isinstance(n, ast.BinOp) and type(n.op) in _SWAP]
        if not ops:
            return None
        node = rng.choice(ops)
        node.op = _SWAP[type(node.op)]()
        return tree

    return _edit_step(p, rng, edit)


def _nearby(value: sympy.Basic, rng: random.Random) -> sympy.Basic:
    """A near miss: a coordinate, a numerator or a radicand off by a little."""
    if isinstance(value, sympy.Tuple):
        i = rng.randrange(len(value))
        return sympy.Tuple(*(_nearby(v, rng) if j == i else v for j, v in enumerate(value.args)))
    if value.is_Rational:
        return sympy.Rational(value.p + rng.choice(_SHIFTS), value.q)
    coeff, rest = value.as_coeff_Mul()
    return coeff * sympy.sqrt(max(2, int(rest.base) + rng.choice(_SHIFTS))) if rest.is_Pow else value + 1


def _slip(p: LatexProblem, rng: random.Random) -> dict[str, sympy.Basic] | None:
    values = p.run()
    name = rng.choice([s.name for s in p.steps if s.name in p.needed()])
    slips = {name: _nearby(values[name], rng)}
    return slips if _wrong(p, p.value, slips) else None


def _wrong_final(p: LatexProblem, rng: random.Random) -> sympy.Basic:
    gold = p.value
    others = [v for n, v in p.run().items() if n in {s.name for s in p.steps} and differs(v, gold)]
    if others and rng.random() < 0.5:
        return rng.choice(others)
    for _ in range(ATTEMPTS):
        if differs(wrong := _nearby(gold, rng), gold):
            return wrong
    return gold + 1 if not isinstance(gold, sympy.Tuple) else sympy.Tuple(*(v + 1 for v in gold.args))


# -- form errors on rendered lines
def _needed_lines(lines: list[str], p: LatexProblem) -> list[int]:
    keep = p.needed()
    return [i for i, line in enumerate(lines) if line.partition(" = ")[0] in keep]


def _pot_form(p: LatexProblem, kind: str, rng: random.Random) -> str:
    lines = p.pot_lines()
    if kind == "missing_ans":
        lines[-1] = lines[-1].replace("ans =", rng.choice(["result =", "answer ="]), 1)
    else:  # syntax
        i = rng.choice(_needed_lines(lines, p))
        lines[i] = break_line(lines[i], rng)
    return "\n".join(lines)


def _eot_form(p: LatexProblem, kind: str, rng: random.Random) -> str:
    blocks = p.eot_blocks()
    if kind == "missing_ans":
        blocks.pop()
        return join_eot(blocks)
    if kind == "unsolvable":  # a check that contradicts a whole-number step (a total, a sum of squares)
        values = p.run()
        whole = [s for s in p.steps if s.name in p.needed() and values[s.name].is_Integer]
        if whole:
            step = rng.choice(whole)
            blocks.insert(len(blocks) - 1, (f"Check: {step.note.lower()}",
                                            [f"{_equation(step.expr)} = {values[step.name] + rng.choice([1, 2, 3, 5])}"]))
            return join_eot(blocks)
        kind = "syntax"
    targets = [(b, e) for b, (_, eqs) in enumerate(blocks[:-1]) for e in _needed_lines(eqs, p)]
    break_equation(blocks, rng.choice(targets), kind, rng)
    return join_eot(blocks)

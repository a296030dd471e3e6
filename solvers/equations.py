"""Equation-of-Thought solver: the value of `ans` in a model-written system of equations.

`solve_eot(text)` returns an `Outcome`: the number, or a failure class with its cause. The
format and the classes are documented for users in docs/eot.md; in short:

* Lines are parsed by our own tokenizer (solvers/eot/parser.py); model text is never `eval`ed
  or `sympify`ed. `%` lines are comments.
* Unknowns are the names. Lines are added one by one to an exact (int and Fraction) system kept in
  reduced row-echelon form: each pivot unknown is an affine form of the free ones. A line that is
  linear once the known values are substituted is eliminated at once; a non-linear one waits
  until enough values are known (in this process too, as an `algebra.Sym` where the unknowns it
  waits on are those SymPy would keep), and what still waits at the end goes to SymPy (fallback.py).
* Re-assignment (`name = ...` a second time) is read as an equation; only if that contradicts
  what is known already (`total = total + 80`), or if the right side uses the name and is not an
  identity (`n = n * 2` with n unknown would otherwise force n = 0), does it start a new version of
  the name, which the later lines then mean (static single assignment). Lines that assign `ans` are read last, so
  that they mean the final versions wherever they stand.
* Only what `ans` depends on must be determined. Several solutions: see `_choose`.

Cost: in the calling process only exact work runs, bounded in the sizes of numbers (algebra's
MAX_BITS), of the text (parser) and in the number of unknowns, and checked against the deadline at
every line and elimination step. A text whose solution needs SymPy (whose cost no size bound
predicts: `sqrt(10**60 + 1)`, non-linear systems) is solved again, whole, in the sandbox
(`solvers.executor`, "sympy" workers), whose child is killed at the time limit.
"""
from __future__ import annotations

import time
from fractions import Fraction

import sympy

from solvers.answers import to_number
from solvers.eot.algebra import (CONSTANTS, Q, Lin, NeedsSymbolic, Poly1, Ratio, Real, Sym, Value, check_sizes, evaluate,
                                 exact_only, quadratic_roots, quot, sub, symbol, to_sym)
from solvers.eot.fallback import is_zero, solve_nonlinear, time_limit
from solvers.eot.parser import EotError, Line, Node, parse_text
from solvers.outcome import Outcome, Status

ANSWER = "ans"
MAX_UNKNOWNS = 200
_CONSTANT_KEYS = {name.strip("<>"): name for name in CONSTANTS}  # pi -> <pi> unless assigned
_COMPARE = {"<": lambda d: d < 0, ">": lambda d: d > 0, "<=": lambda d: d <= 0, ">=": lambda d: d >= 0,
            "!=": lambda d: d != 0}


def solve_eot(text: str, timeout: float = 5.0) -> Outcome:
    """The value of `ans` in an EoT rationale, or the reason there is none, within `timeout` seconds.

    Exact work runs here; a text that needs SymPy is solved in the sandbox (see the module docstring).
    """
    if not isinstance(text, str):
        return Outcome.fail(Status.PARSE, "rationale is not text")
    try:
        with exact_only():
            return solve_symbolic(text, timeout)
    except NeedsSymbolic:
        pass
    from solvers.executor import shared_executor

    return shared_executor(timeout, "sympy").run_many([text], kind="eot")[0]


def solve_symbolic(text: str, timeout: float = 5.0) -> Outcome:
    """The whole solver, SymPy included (what the sandbox runs; SymPy is not bounded here)."""
    try:
        return _System(parse_text(text), time.monotonic() + timeout).solve()
    except EotError as exc:
        return Outcome.fail(exc.status, exc.detail)
    except TimeoutError:
        return Outcome.fail(Status.TIMEOUT, f"not solved within {timeout:g} s")
    except (RecursionError, MemoryError, ArithmeticError, ValueError, TypeError) as exc:
        return Outcome.fail(Status.UNSUPPORTED, f"{type(exc).__name__}: {exc}")


class _Eq:
    """`lhs rel rhs` with its names bound to unknowns (versions) as of its line."""

    __slots__ = ("lineno", "lhs", "rhs", "rel", "keys", "prefer")

    def __init__(self, lineno: int, lhs: Node, rhs: Node, rel: str, keys: dict[str, str],
                 prefer: str | None = None) -> None:
        self.lineno, self.lhs, self.rhs, self.rel, self.keys, self.prefer = lineno, lhs, rhs, rel, keys, prefer


def _names(node: Node, out: set[str]) -> set[str]:
    kind = node[0]
    if kind == "name":
        out.add(node[1])
    elif kind == "call":
        for arg in node[2]:
            _names(arg, out)
    elif kind != "num":
        for child in node[1:]:
            _names(child, out)
    return out


def _shown(key: str) -> str:
    name, _, version = key.partition("#")
    return f"{name} (assignment {version})" if version else name


class _System:
    def __init__(self, lines: list[Line], deadline: float) -> None:
        self.lines = lines
        self.deadline = deadline
        self.assigned_anywhere = {line.assigned_name for line in lines}
        self.pivots: dict[str, Lin] = {}  # unknown -> affine form over free unknowns
        self.versions: dict[str, int] = {}
        self.order: dict[str, int] = {}  # unknown -> when first seen (pivot choice)
        self.pending: list[tuple[_Eq, Value | None, set[str]]] = []  # non-linear (None: deferred), free unknowns
        self.nonzero: list[tuple[Lin, int]] = []  # denominators cleared from `c / x = d`
        self.inequalities: list[_Eq] = []
        self.symbolic_exponents: set[int] = set()  # lines with an exponent that has unknowns

    # -- names and values ------------------------------------------------------------------
    def key(self, name: str, version: int | None = None) -> str:
        if name in _CONSTANT_KEYS and name not in self.assigned_anywhere:
            return _CONSTANT_KEYS[name]
        v = self.versions.get(name, 1) if version is None else version
        key = name if v == 1 else f"{name}#{v}"
        if key not in self.order:
            if len(self.order) >= MAX_UNKNOWNS:
                raise EotError(Status.UNSUPPORTED, f"more than {MAX_UNKNOWNS} unknowns")
            self.order[key] = len(self.order)
        return key

    def bind(self, *nodes: Node) -> dict[str, str]:
        names: set[str] = set()
        for node in nodes:
            _names(node, names)
        return {name: self.key(name) for name in names}

    def lookup(self, key: str) -> Lin:
        return self.pivots.get(key) or Lin.var(key)

    def value(self, eq: _Eq) -> Value:
        """lhs - rhs with everything known substituted."""
        context = (eq.keys, self.lookup, eq.lineno, self.symbolic_exponents)
        return sub(evaluate(eq.lhs, *context), evaluate(eq.rhs, *context), eq.lineno)

    def substituted(self, form: Lin) -> Lin:
        out = Lin(form.const)
        for k, c in form.coef.items():
            out = out.plus(self.lookup(k), c)
        return out

    # -- building the system ---------------------------------------------------------------
    def in_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise TimeoutError

    def solve(self) -> Outcome:
        ordered = [ln for ln in self.lines if ln.assigned_name != ANSWER] + \
                  [ln for ln in self.lines if ln.assigned_name == ANSWER]
        assigned: set[str] = set()
        for line in ordered:
            self.in_time()
            name = line.assigned_name
            if name is None:
                for lhs, rel, rhs in zip(line.sides, line.relations, line.sides[1:]):
                    eq = _Eq(line.lineno, lhs, rhs, rel, self.bind(lhs, rhs))
                    (self.absorb if rel in ("=", "==") else self.inequalities.append)(eq)
                continue
            lhs, rhs = line.sides
            keys = self.bind(rhs)
            eq = _Eq(line.lineno, lhs, rhs, "=", {**keys, name: self.key(name)})
            eq.prefer = eq.keys[name]
            if name in assigned:
                value = self.value(eq)
                linear = value.num if isinstance(value, Ratio) else value
                contradicts = isinstance(linear, Lin) and linear.is_const and linear.const
                # An update of itself that is not an identity (`n = n * 2`): as an equation it
                # would force the degenerate n = 0, so it is a new version as well.
                updates = name in keys and not (isinstance(linear, Lin) and linear.is_const)
                if contradicts or updates:
                    # A new version of the name (`total = total + 80`); later lines mean it.
                    self.versions[name] = self.versions.get(name, 1) + 1
                    eq = self.new_version(eq, name, keys)
                    value = self.value(eq)
                self.absorb(eq, value)
            else:
                self.absorb(eq)
            assigned.add(name)
        return self.answer()

    def new_version(self, eq: _Eq, name: str, rhs_keys: dict[str, str]) -> _Eq:
        """`name = rhs` with the lhs renamed to the new version and the rhs still meaning the old one."""
        fresh = f"\0{name}"  # a placeholder name no token can spell
        keys = {**rhs_keys, fresh: self.key(name)}
        return _Eq(eq.lineno, ("name", fresh), eq.rhs, "=", keys, keys[fresh])

    def absorb(self, eq: _Eq, value: Value | None = None) -> None:
        if value is None:
            try:
                value = self.value(eq)
            except NeedsSymbolic:  # exact_only(): an answer line may be a closed form (`closed_form`)
                if eq.lhs != ("name", ANSWER):
                    raise
                self.defer(eq)
                return
        if isinstance(value, Ratio):
            self.nonzero.append((value.den, eq.lineno))
            value = value.num
        if isinstance(value, Lin):
            self.eliminate(value, eq)
            return
        if isinstance(value, Real):
            raise NeedsSymbolic  # whether it is zero is SymPy's to say
        free = {value.var} if isinstance(value, Poly1) else set(value.free) if isinstance(value, Sym) else \
            {s.name for s in value.free_symbols}
        if free:
            self.pending.append((eq, value, free))
        elif not is_zero(value):
            raise EotError(Status.INCONSISTENT, f"line {eq.lineno}: the equation does not hold")

    def defer(self, eq: _Eq) -> None:
        """Keep an answer line that needs SymPy for now (under `exact_only()`; answer lines are read
        last, so no other line waits on it): it is evaluated again when one of the unknowns its names
        stand for gets a pivot, as SymPy's pending lines are; `answer` then tries `closed_form`, else
        the whole text needs SymPy. (Other lines wait only as an `algebra.Sym`, on exactly the unknowns
        SymPy's expression keeps: SymPy's cancellations, `0 / x`, change which unknowns wake a line,
        and with them the verdict.)"""
        free = {k for key in eq.keys.values() if key not in CONSTANTS for k in self.lookup(key).coef}
        if not free:
            raise NeedsSymbolic
        self.pending.append((eq, None, free))

    def eliminate(self, form: Lin, eq: _Eq) -> None:
        if form.is_const:
            if form.const:
                raise EotError(Status.INCONSISTENT, f"line {eq.lineno} contradicts the lines before it "
                                                    f"(lhs - rhs = {_number(form.const)})")
            return
        pivot = eq.prefer if eq.prefer in form.coef else max(form.coef, key=self.order.__getitem__)
        c = form.coef[pivot]
        solved = check_sizes(Lin(quot(-form.const, c), {k: quot(-v, c) for k, v in form.coef.items() if k != pivot}),
                             eq.lineno)
        for k, expr in self.pivots.items():
            if pivot in expr.coef:
                self.in_time()
                rest = dict(expr.coef)
                factor = rest.pop(pivot)
                self.pivots[k] = check_sizes(Lin(expr.const, rest).plus(solved, factor), eq.lineno)
        self.pivots[pivot] = solved
        woken = [p for p in self.pending if pivot in p[2]] if self.pending else None
        if woken:
            self.pending = [p for p in self.pending if pivot not in p[2]]
            for p in woken:
                self.absorb(p[0])

    # -- the answer ------------------------------------------------------------------------
    def answer(self) -> Outcome:
        if ANSWER not in self.order:
            raise EotError(Status.PARSE, "no equation defines `ans`")
        for den, lineno in self.nonzero:
            d = self.substituted(den)
            if d.is_const and not d.const:
                raise EotError(Status.INCONSISTENT, f"line {lineno}: the solution divides by zero")
        if self.pending and any(value is None for _, value, _ in self.pending):
            return self.closed_form()
        ans = self.lookup(self.key(ANSWER))
        if ans.is_const:
            if not self.inequalities_hold({}):
                raise EotError(Status.INCONSISTENT, f"the answer {_number(ans.const)} violates an inequality")
            return _ok(ans.const)
        # The non-linear equations connected to the unknowns `ans` depends on.
        unknowns, taken = set(ans.coef), []
        grown = True
        while grown:
            grown = False
            for p in self.pending:
                if p not in taken and p[2] & unknowns:
                    taken.append(p)
                    unknowns |= p[2]
                    grown = True
        if not taken:
            names = ", ".join(sorted(_shown(k) for k in ans.coef))
            for ineq in self.inequalities:
                if set(ineq.keys.values()) & (set(ans.coef) | {self.key(ANSWER)}):
                    raise EotError(Status.UNSUPPORTED, f"line {ineq.lineno}: inequalities are checked, not "
                                                       f"solved; ans still depends on {names}")
            raise EotError(Status.UNDER_DETERMINED, f"ans depends on free unknown(s): {names}")
        for eq, _, _ in taken:
            if eq.lineno in self.symbolic_exponents:
                raise EotError(Status.UNSUPPORTED, f"line {eq.lineno}: an exponent depends on unknowns")
        values = [self.value(eq) for eq, _, _ in taken]
        if len(unknowns) == 1 and all(isinstance(v, Poly1) and len(v.coefs) == 3 for v in values):
            return self.choose(self.quadratic(ans, values))  # the common case, without SymPy
        equations = [to_sym(v) for v in values]
        solutions = time_limit(lambda: solve_nonlinear(equations), self.deadline - time.monotonic())
        ans_sym = to_sym(ans)
        candidates: list[tuple[Q | complex, dict]] = []
        for sol in solutions:
            value = ans_sym.subs(sol)
            if value.free_symbols:
                names = ", ".join(sorted(_shown(s.name) for s in value.free_symbols))
                raise EotError(Status.UNDER_DETERMINED, f"ans depends on free unknown(s): {names}")
            exact = isinstance(value, sympy.Rational)
            candidates.append((Fraction(int(value.p), int(value.q)) if exact else complex(sympy.N(value, 30)), sol))
        return self.choose(candidates)

    def closed_form(self) -> Outcome:
        """(Under `exact_only()`, with deferred lines.) The answer where the one line still waiting is
        `ans = E`, E a closed-form constant (pi, an irrational root): SymPy would solve that line alone
        and answer the float of E, which an interval gives (algebra.Real). Anything else: the sandbox."""
        key = self.key(ANSWER)
        if len(self.pending) != 1 or self.inequalities:
            raise NeedsSymbolic
        eq, _, free = self.pending[0]
        if free != {key} or eq.prefer != key or eq.lhs != ("name", ANSWER) or eq.lineno in self.symbolic_exponents:
            raise NeedsSymbolic
        value = evaluate(eq.rhs, eq.keys, self.lookup, eq.lineno, self.symbolic_exponents)
        number = value.to_float() if isinstance(value, Real) else None
        if number is None:
            raise NeedsSymbolic
        return _ok(number)

    def quadratic(self, ans: Lin, polys: list[Value]) -> list[tuple[Q | complex, dict]]:
        """Candidates from quadratics in one unknown: exact roots where rational, floats otherwise."""
        first = polys[0]
        assert isinstance(first, Poly1)
        candidates: list[tuple[Q | complex, dict]] = []
        for root in quadratic_roots(*first.coefs):
            if not isinstance(root, complex) and any(abs(p.at(root)) > 1e-9 for p in polys[1:]):  # type: ignore[union-attr]
                continue
            value = ans.const + sum(c * root for c in ans.coef.values())
            candidates.append((value, {symbol(first.var): root}))
        return candidates

    def inequalities_hold(self, solution: dict) -> bool:
        """False if a fully determined inequality fails; undetermined ones are ignored."""
        for ineq in self.inequalities:
            diff = self.value(ineq)
            if isinstance(diff, Lin) and diff.is_const:
                number: Q | float = diff.const
            elif isinstance(diff, Lin) and not all(symbol(k) in solution for k in diff.coef):
                continue  # undetermined (SymPy would leave free symbols)
            elif isinstance(diff, Lin) and all(isinstance(solution[symbol(k)], (int, Fraction)) for k in diff.coef):
                number = _real(diff.const + sum(c * solution[symbol(k)] for k, c in diff.coef.items()))
            else:
                e = to_sym(diff).subs(solution)
                if e.free_symbols:
                    continue
                z = complex(sympy.N(e, 30))
                if abs(z.imag) > 1e-9:
                    return False
                number = z.real
            if not _COMPARE[ineq.rel](number):
                return False
        return True

    def choose(self, candidates: list[tuple[Q | complex, dict]]) -> Outcome:
        """The rule for several solutions: drop complex ones and those that break an inequality; if
        distinct values remain, take the single positive one, else fail as ambiguous."""
        reals: list[Q | float] = []
        complex_seen = False
        for value, sol in candidates:
            if isinstance(value, complex):
                if abs(value.imag) > 1e-9 * max(1.0, abs(value.real)):
                    complex_seen = True
                    continue
                value = value.real
            if self.inequalities_hold(sol) and not any(abs(value - r) <= 1e-9 * max(1.0, abs(r)) for r in reals):
                reals.append(value)
        if not reals:
            if complex_seen:
                return Outcome.fail(Status.NON_NUMERIC, "ans has only complex values")
            return Outcome.fail(Status.INCONSISTENT, "the non-linear equations have no solution")
        if len(reals) > 1:
            positive = [r for r in reals if r > 0]
            if len(positive) != 1:
                shown = ", ".join(f"{float(r):g}" for r in sorted(reals))
                return Outcome.fail(Status.AMBIGUOUS, f"ans has {len(reals)} values: {shown}")
            reals = positive
        return _ok(reals[0])

def _real(value: Q) -> Q | float:
    """The float SymPy's 30-digit evaluation gives for an exact rational (the value where it overflows)."""
    try:
        return float(value)
    except OverflowError:
        return value


def _number(value: Q | float) -> int | float | None:
    """As a Fraction would be reported (a whole number beyond 2**53 is a float, as from a Fraction)."""
    if type(value) is int and -2**53 < value < 2**53:
        return value  # what to_number(Fraction(value)) gives, without making the Fraction
    return to_number(Fraction(value) if type(value) is int else value)


def _ok(value: Q | float) -> Outcome:
    number = _number(value)
    if number is None:
        return Outcome.fail(Status.NON_NUMERIC, "ans is not a finite number")
    return Outcome.ok(number)


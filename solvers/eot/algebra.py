"""Exact evaluation of EoT expressions.

A value is a `Lin` (rational constant plus rational multiples of unknowns), a `Ratio` of two
`Lin`s (`120 / x`, cleared to a linear equation), or, for anything else (products of unknowns,
irrational roots, floor of an unknown), a SymPy expression kept for the fallback; under
`exact_only()` a `Sym` (a product or quotient of unknowns, of which only the unknowns SymPy's
expression would keep are known) or a `Real` (a closed-form constant, as an interval) stands for it. Everything
that stays linear is done exactly, in `int` where a number is whole and `fractions.Fraction` where not
(the common case, word problems over whole numbers, never pays for a Fraction); `quot` divides.

Sizes are bounded here (`MAX_BITS` for every exact number made by a product, a power or an
elimination step), so that exact work costs little; SymPy's cost is not bounded by anything we can
check, so in the validating process `exact_only()` forbids it: the first step that would need
SymPy raises `NeedsSymbolic`, and the caller moves the whole text into the sandbox.
"""
from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator
from collections.abc import Callable, Mapping
from fractions import Fraction

import sympy
from mpmath import libmp
from mpmath.ctx_iv import MPIntervalContext

from solvers.eot.parser import EotError, Node
from solvers.outcome import Status

MAX_BITS = 4096  # size of an exact intermediate number (numerator or denominator)
MAX_EXPONENT = 10_000  # |integer exponent| of a constant
MAX_DEGREE = 32  # |integer exponent| of an expression with unknowns
CONSTANTS = {"<pi>": sympy.pi}
ZERO, ONE = 0, 1
Q = int | Fraction  # an exact number (never a float: `quot` divides)


def quot(a: Q, b: Q) -> Q:
    """a / b exactly: an int where b divides a, else a Fraction."""
    if type(a) is int and type(b) is int:
        q, r = divmod(a, b)
        return q if not r else Fraction(a, b)
    f = Fraction(a) / b
    return f.numerator if f.denominator == 1 else f


class Lin:
    """`const + sum(coef[k] * k)`: an affine form over unknowns named by their keys."""

    __slots__ = ("const", "coef")

    def __init__(self, const: Q, coef: dict[str, Q] | None = None) -> None:
        self.const = const
        self.coef = coef or {}

    @classmethod
    def var(cls, key: str) -> "Lin":
        return cls(ZERO, {key: ONE})

    @property
    def is_const(self) -> bool:
        return not self.coef

    def scaled(self, factor: Q) -> "Lin":
        if not factor:
            return Lin(ZERO)
        return Lin(self.const * factor, {k: c * factor for k, c in self.coef.items()})

    def plus(self, other: "Lin", factor: Q = ONE) -> "Lin":
        """self + factor * other."""
        coef = dict(self.coef)
        one = factor == 1
        for k, c in other.coef.items():
            v = coef.get(k, 0) + (c if one else factor * c)
            if v:
                coef[k] = v
            else:
                coef.pop(k, None)
        return Lin(self.const + (other.const if one else factor * other.const), coef)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Lin) and self.const == other.const and self.coef == other.coef

    __hash__ = None  # type: ignore[assignment]


class Ratio:
    """`num / den` with unknowns in `den`; an equation `Ratio == 0` means num == 0 and den != 0."""

    __slots__ = ("num", "den")

    def __init__(self, num: Lin, den: Lin) -> None:
        self.num, self.den = num, den


class Poly1:
    """A polynomial of degree >= 2 in one unknown: sum(coefs[i] * var**i), solved without SymPy."""

    __slots__ = ("var", "coefs")

    def __init__(self, var: str, coefs: list[Q]) -> None:
        self.var, self.coefs = var, coefs

    @staticmethod
    def make(var: str, coefs: list[Q]) -> "Poly1 | Lin":
        while len(coefs) > 1 and not coefs[-1]:
            coefs.pop()
        if len(coefs) > 2:
            return Poly1(var, coefs)
        return Lin(coefs[0], {var: coefs[1]} if len(coefs) > 1 and coefs[1] else None)

    @staticmethod
    def of(v: "Value") -> tuple[str | None, list[Q]] | None:
        """(unknown, coefficients) of a constant, a Lin in at most one unknown or a Poly1."""
        if isinstance(v, Poly1):
            return v.var, v.coefs
        if isinstance(v, Lin) and len(v.coef) <= 1:
            for k, c in v.coef.items():
                return k, [v.const, c]
            return None, [v.const]
        return None

    def at(self, x: Q | float) -> Q | float:
        total: Q | float = ZERO
        for c in reversed(self.coefs):
            total = total * x + c
        return total


_IV = MPIntervalContext()  # our own context: its precision is nobody else's
_IV.prec = 128
_MARGIN = _IV.mpf([1 - 2.0**-80, 1 + 2.0**-80])  # well beyond the error of SymPy's 30-digit evaluation
_INTERVALS = {"<pi>": _IV.pi}  # CONSTANTS as intervals


class Real:
    """(Only under `exact_only()`.) A real constant that SymPy would keep in closed form (pi, a root that
    is not rational, arithmetic on them), as an interval that holds it (mpmath's, 128 bits: bounded
    work). It serves one purpose, an answer `ans = 9 * pi`; any other use (with an unknown, in a
    comparison, floor...) needs SymPy, as does an interval that does not settle its float."""

    __slots__ = ("iv",)

    def __init__(self, iv: object) -> None:
        self.iv = iv

    def to_float(self) -> float | None:
        """The float nearest to the value, if every point of the interval (widened) rounds to it: then it
        is also what SymPy's `complex(N(value, 30))` gives. None if not settled, or out of range."""
        lo, hi = (libmp.to_float(x, rnd=libmp.round_nearest) for x in (self.iv * _MARGIN)._mpi_)
        if lo != hi or not (lo == 0 or 1e-300 < abs(lo) < 1e300):
            return None
        return lo


def _interval(v: "Value") -> object:
    if isinstance(v, Real):
        return v.iv
    c = _const(v)
    if c is None:
        raise NeedsSymbolic
    return _IV.mpf(c.numerator) / c.denominator


def _positive(v: "Value") -> bool:
    return bool(_interval(v) > 0)  # an interval compares True only if all of it does


class Sym:
    """(Only under `exact_only()`.) A value SymPy would keep as an expression (`length * width`,
    `speed - distance / time`), known only by its unknowns, which are exactly the free symbols of that
    expression (see `_sym`): a line with this value waits on the same unknowns as on the SymPy path,
    and is evaluated again, exactly, when one of them gets a pivot."""

    __slots__ = ("free",)

    def __init__(self, free: frozenset[str]) -> None:
        self.free = free


Value = Lin | Ratio | Poly1 | Real | Sym | sympy.Expr


def _poly_op(a: Value, b: Value, op: str) -> Value | None:
    """a + b or a * b when both are polynomials in the same single unknown, else None."""
    pa, pb = Poly1.of(a), Poly1.of(b)
    if pa is None or pb is None or (pa[0] and pb[0] and pa[0] != pb[0]):
        return None
    var, ca, cb = pa[0] or pb[0], pa[1], pb[1]
    if var is None:
        return None
    if op == "+":
        n = max(len(ca), len(cb))
        return Poly1.make(var, [(ca[i] if i < len(ca) else ZERO) + (cb[i] if i < len(cb) else ZERO) for i in range(n)])
    if len(ca) + len(cb) - 2 > MAX_DEGREE:
        return None
    out = [ZERO] * (len(ca) + len(cb) - 1)
    for i, x in enumerate(ca):
        if x:
            for j, y in enumerate(cb):
                out[i + j] += x * y
    return Poly1.make(var, out)
_SYMBOLS: dict[str, sympy.Symbol] = {}
_symbolic = contextvars.ContextVar("eot_symbolic", default=True)


class NeedsSymbolic(Exception):
    """Raised under `exact_only()` where SymPy would be needed."""


@contextlib.contextmanager
def exact_only() -> Iterator[None]:
    """Within: no SymPy (see the module docstring)."""
    token = _symbolic.set(False)
    try:
        yield
    finally:
        _symbolic.reset(token)


def _symbolic_allowed() -> None:
    if not _symbolic.get():
        raise NeedsSymbolic


def symbol(key: str) -> sympy.Symbol:
    s = _SYMBOLS.get(key)
    if s is None:
        s = _SYMBOLS[key] = sympy.Symbol(key)
    return s


def rational(f: Q) -> sympy.Rational:
    _symbolic_allowed()
    return sympy.Rational(f.numerator, f.denominator)


def to_sym(v: Value) -> sympy.Expr:
    _symbolic_allowed()
    if isinstance(v, Lin):
        return sympy.Add(rational(v.const), *(rational(c) * symbol(k) for k, c in v.coef.items()))
    if isinstance(v, Ratio):
        return to_sym(v.num) / to_sym(v.den)
    if isinstance(v, Poly1):
        x = symbol(v.var)
        return sympy.Add(*(rational(c) * x**i for i, c in enumerate(v.coefs)))
    return v


def _zero(v: Value) -> bool:
    """Whether v is 0 as SymPy would have it (a zero constant, `0 / x`)."""
    n = v.num if isinstance(v, Ratio) else v
    return isinstance(n, Lin) and n.is_const and not n.const


def _unknowns(v: Value) -> frozenset[str] | None:
    """The unknowns of a value that depends on each of them (none for zero; None: not known to)."""
    if _zero(v):
        return frozenset()
    if isinstance(v, Lin):
        return frozenset(k for k, c in v.coef.items() if c)
    if isinstance(v, Ratio):  # num / den on disjoint unknowns, num not zero, den not constant
        num, den = _unknowns(v.num), _unknowns(v.den)
        return None if num is None or den is None or num & den else num | den
    if isinstance(v, Poly1):
        return frozenset((v.var,))
    if isinstance(v, Sym):
        return v.free
    return None


def _sym(op: str, a: Value, b: Value, lineno: int) -> Value:
    """Under `exact_only()`, `a op b` where SymPy's expression would be needed (op in `+ * / **`,
    b a constant for `**`): a `Sym` with the free symbols of that expression, where they are certain.

    SymPy only drops unknowns from what goes in, and keeps every unknown the value depends on. A sum,
    product, quotient or power (exponent not 0) of operands on disjoint unknowns, none zero, each
    depending on all of its own, depends on all of them: those are the free symbols. A zero operand
    is SymPy's `0 * e = 0 / e = 0`, `0 + e = e` (`0 / x - y` keeps only y). Anything else (shared
    unknowns: `x * y / x`; a Real, floor...) raises NeedsSymbolic: the SymPy path decides."""
    za, zb = _zero(a), _zero(b)
    if op == "/" and zb:
        raise EotError(Status.NON_NUMERIC, f"line {lineno}: division by zero")
    if (op == "*" and (za or zb)) or (op == "/" and za):
        return Lin(ZERO)
    ua, ub = _unknowns(a), _unknowns(b)
    if ua is None or ub is None or ua & ub or not ua | ub or (op == "**" and za):
        raise NeedsSymbolic
    return Sym(ua | ub)


def _symbolic_op(op: str, a: Value, b: Value, lineno: int) -> Value:
    """a op b (op in `+ * / **`) where exact arithmetic has no form for the result: SymPy's (a `Sym`
    under `exact_only()`)."""
    if not _symbolic.get():
        return _sym(op, a, b, lineno)
    x, y = to_sym(a), to_sym(b)
    if op == "/" and y == 0:
        raise EotError(Status.NON_NUMERIC, f"line {lineno}: division by zero")
    return _from_sym(x + y if op == "+" else x * y if op == "*" else x / y if op == "/" else x ** y)


def _from_sym(e: sympy.Expr) -> Value:
    """Back to exact arithmetic when SymPy produced a plain rational (`sqrt(2)**2`)."""
    if isinstance(e, sympy.Rational):
        return Lin(quot(int(e.p), int(e.q)))
    return e


def _check_size(f: Q, lineno: int) -> Q:
    if f.numerator.bit_length() > MAX_BITS or f.denominator.bit_length() > MAX_BITS:
        raise EotError(Status.UNSUPPORTED, f"line {lineno}: number too large")
    return f


def check_sizes(form: Lin, lineno: int) -> Lin:
    """`form` if none of its numbers exceeds MAX_BITS (else UNSUPPORTED)."""
    _check_size(form.const, lineno)
    for c in form.coef.values():
        _check_size(c, lineno)
    return form


def _const(v: Value) -> Q | None:
    return v.const if isinstance(v, Lin) and v.is_const else None


def add(a: Value, b: Value, lineno: int) -> Value:
    if isinstance(a, Real) or isinstance(b, Real):
        return Real(_interval(a) + _interval(b))
    if isinstance(a, Lin) and isinstance(b, Lin):
        return a.plus(b)
    if isinstance(a, Lin) and isinstance(b, Ratio):
        a, b = b, a
    if isinstance(a, Ratio):
        if isinstance(b, Lin) and b.is_const:
            return Ratio(a.num.plus(a.den, b.const), a.den)
        if isinstance(b, Ratio) and b.den == a.den:
            return Ratio(a.num.plus(b.num), a.den)
    elif (poly := _poly_op(a, b, "+")) is not None:
        return poly
    return _symbolic_op("+", a, b, lineno)


def sub(a: Value, b: Value, lineno: int) -> Value:
    """a - b (two Lins without the intermediate -b: the common case of every line)."""
    if type(a) is Lin and type(b) is Lin:
        return a.plus(b, -1)
    return add(a, neg(b), lineno)


def neg(a: Value) -> Value:
    if isinstance(a, Real):
        return Real(-a.iv)
    if isinstance(a, Lin):
        return Lin(-a.const, {k: -c for k, c in a.coef.items()} if a.coef else None)
    if isinstance(a, Ratio):
        return Ratio(neg(a.num), a.den)
    if isinstance(a, Poly1):
        return Poly1(a.var, [-c for c in a.coefs])
    if isinstance(a, Sym):
        return a
    return -a


def mul(a: Value, b: Value, lineno: int) -> Value:
    if isinstance(a, Real) or isinstance(b, Real):
        return Real(_interval(a) * _interval(b))
    ca, cb = _const(a), _const(b)
    if cb is not None and ca is None:
        a, b, ca, cb = b, a, cb, ca
    if ca is not None:
        if isinstance(b, Lin):
            return check_sizes(b.scaled(ca), lineno)
        if isinstance(b, Ratio):
            return Ratio(check_sizes(b.num.scaled(ca), lineno), b.den)
    if (poly := _poly_op(a, b, "*")) is not None:
        if isinstance(poly, Poly1):
            for c in poly.coefs:
                _check_size(c, lineno)
            return poly
        return check_sizes(poly, lineno)
    return _symbolic_op("*", a, b, lineno)


def div(a: Value, b: Value, lineno: int) -> Value:
    cb = _const(b)
    if cb is not None:
        if not cb:
            raise EotError(Status.NON_NUMERIC, f"line {lineno}: division by zero")
        return mul(a, Lin(quot(1, cb)), lineno)
    if isinstance(b, Lin) and isinstance(a, Lin):
        return Ratio(a, b)
    if isinstance(a, Real) or isinstance(b, Real):
        if 0 in _interval(b):
            raise NeedsSymbolic  # perhaps exactly zero, which SymPy would tell
        return Real(_interval(a) / _interval(b))
    if isinstance(b, Ratio) and (ca := _const(a)) is not None:
        if b.num.is_const:  # c / (n / D) = (c / n) * D
            if not b.num.const:
                raise EotError(Status.NON_NUMERIC, f"line {lineno}: division by zero")
            return b.den.scaled(quot(ca, b.num.const))
        return Ratio(b.den.scaled(ca), b.num)
    return _symbolic_op("/", a, b, lineno)


def _exact_root(f: Q, q: int) -> Q | None:
    """The exact q-th root of a non-negative rational, if it is rational."""
    def iroot(n: int) -> int | None:
        r = round(n ** (1 / q)) if n.bit_length() < 1000 else math.isqrt(n) if q == 2 else None
        if r is None:
            return None
        for c in (r - 1, r, r + 1):
            if c >= 0 and c**q == n:
                return c
        return None
    num, den = iroot(f.numerator), iroot(f.denominator)
    return quot(num, den) if num is not None and den is not None else None


def power(a: Value, b: Value, lineno: int, symbolic_lines: set[int]) -> Value:
    e = _const(b)
    if e is None:  # an exponent with unknowns: kept symbolic, refused later unless they get known
        symbolic_lines.add(lineno)
        return to_sym(a) ** to_sym(b)
    if abs(e) > MAX_EXPONENT:
        raise EotError(Status.UNSUPPORTED, f"line {lineno}: exponent {float(e):g} is too large")
    base = _const(a)
    if base is not None:
        if e.denominator == 1:
            bits = max(base.numerator.bit_length(), base.denominator.bit_length())
            if bits * abs(e) > MAX_BITS:
                raise EotError(Status.UNSUPPORTED, f"line {lineno}: power too large")
            if not base and e < 0:
                raise EotError(Status.NON_NUMERIC, f"line {lineno}: division by zero")
            return Lin(base ** int(e) if e >= 0 else quot(1, base ** -int(e)))
        if base >= 0 and e.denominator <= 64:
            root = _exact_root(base, e.denominator)
            if root is not None:
                return power(Lin(root), Lin(e.numerator), lineno, symbolic_lines)
        if not _symbolic.get() and base > 0:
            return Real(_interval(Lin(base)) ** _interval(Lin(e)))
        return _from_sym(rational(base) ** rational(e))
    if e == 1:
        return a
    if e == 0:
        return Lin(ONE)
    if e == -1:
        return div(Lin(ONE), a, lineno)
    if abs(e) > MAX_DEGREE:
        raise EotError(Status.UNSUPPORTED, f"line {lineno}: power {float(e):g} of an unknown")
    if e.denominator == 1 and e > 0 and Poly1.of(a) is not None:
        out: Value = a
        for _ in range(int(e) - 1):
            out = mul(out, a, lineno)
        return out
    if isinstance(a, Real) and ((e.denominator == 1 and e > 0) or _positive(a)):
        return Real(a.iv ** (int(e) if e.denominator == 1 else _interval(Lin(e))))
    return _symbolic_op("**", a, b, lineno)


def quadratic_roots(c0: Q, c1: Q, c2: Q) -> list[Q | float | complex]:
    """Roots of c0 + c1 x + c2 x**2 (c2 != 0): exact when the discriminant is a rational square."""
    disc = c1 * c1 - 4 * c2 * c0
    if disc < 0:
        root = complex(0, math.sqrt(-disc))
        return [(-c1 + root) / (2 * c2), (-c1 - root) / (2 * c2)]
    exact = _exact_root(disc, 2)
    if exact is not None:
        return [quot(-c1 + exact, 2 * c2), quot(-c1 - exact, 2 * c2)]
    sq = math.sqrt(disc)
    return [float((-c1 + sq) / (2 * c2)), float((-c1 - sq) / (2 * c2))]


def _round(x: Q, digits: int = 0) -> Q:
    """Round half up (2.5 -> 3, -2.5 -> -2), the schoolbook rule; SymPy path uses floor(x + 1/2) too."""
    scale = 10 ** digits
    return quot(math.floor(x * scale + Fraction(1, 2)), scale)


def call(function: str, args: list[Value], lineno: int) -> Value:
    consts = [_const(a) for a in args]
    if all(c is not None for c in consts):
        x = consts[0]
        if function == "floor":
            return Lin(math.floor(x))
        if function == "ceil":
            return Lin(math.ceil(x))
        if function == "abs":
            return Lin(abs(x))
        if function == "min":
            return Lin(min(consts))  # type: ignore[type-var]
        if function == "max":
            return Lin(max(consts))  # type: ignore[type-var]
        if function == "round":
            digits = consts[1] if len(consts) > 1 else 0
            if digits.denominator != 1 or not 0 <= digits <= 15:
                raise EotError(Status.UNSUPPORTED, f"line {lineno}: round() to {digits} digits")
            return Lin(_round(x, int(digits)))
        if function == "sqrt" and x >= 0:
            root = _exact_root(x, 2)
            if root is not None:
                return Lin(root)
    if function == "sqrt" and not _symbolic.get() and _positive(args[0]):
        return Real(_IV.sqrt(_interval(args[0])))
    syms = [to_sym(a) for a in args]
    if function == "round":
        if len(syms) > 1 and not isinstance(args[1], Lin):
            raise EotError(Status.UNSUPPORTED, f"line {lineno}: round() to an unknown number of digits")
        scale = sympy.Integer(10) ** (int(consts[1]) if len(consts) > 1 else 0)  # type: ignore[arg-type]
        return _from_sym(sympy.floor(syms[0] * scale + sympy.Rational(1, 2)) / scale)
    table = {"floor": sympy.floor, "ceil": sympy.ceiling, "abs": sympy.Abs, "sqrt": sympy.sqrt,
             "min": sympy.Min, "max": sympy.Max}
    return _from_sym(table[function](*syms))


def evaluate(node: Node, keys: Mapping[str, str], lookup: Callable[[str], Value], lineno: int,
             symbolic_lines: set[int]) -> Value:
    """The value of an AST with names resolved through `keys` (name -> unknown) and `lookup`; `lineno`
    joins `symbolic_lines` if an exponent has unknowns."""
    def ev(n: Node) -> Value:
        kind = n[0]
        if kind == "num":
            return Lin(n[1])
        if kind == "name":
            key = keys[n[1]]
            if key in CONSTANTS:
                return CONSTANTS[key] if _symbolic.get() else Real(_INTERVALS[key])
            return lookup(key)
        if kind == "neg":
            return neg(ev(n[1]))
        if kind == "call":
            return call(n[1], [ev(a) for a in n[2]], lineno)
        a, b = ev(n[1]), ev(n[2])
        if kind == "+":
            return add(a, b, lineno)
        if kind == "-":
            return sub(a, b, lineno)
        if kind == "*":
            return mul(a, b, lineno)
        if kind == "/":
            return div(a, b, lineno)
        return power(a, b, lineno, symbolic_lines)
    return ev(node)

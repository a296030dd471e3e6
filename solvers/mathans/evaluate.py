"""Equality of expressions by evaluation at a few rational points, without SymPy.

The symbolic path parses LaTeX with an ANTLR grammar in pure Python (about 16 ms an answer) and
simplifies with SymPy (about 8 ms more). Most MATH answers that reach it are small expressions
(`2\\sqrt{5}`, `\\frac{\\pi}{2}`, `6t-5`, `x^2+1`): this reads that subset of LaTeX with a small
recursive-descent parser and evaluates both sides at three points, exactly (Fractions) where the
arithmetic stays rational and in complex floats otherwise (radicals, pi). Equal values at every
point mean equal expressions (the usual polynomial-identity test); anything outside the subset
raises Unsupported and the caller falls back to the symbolic path. Nothing is `eval`ed.
"""
from __future__ import annotations

import cmath
import math
import re
import zlib
from fractions import Fraction

Value = Fraction | complex
_TOKEN = re.compile(r"\s*(\d+\.\d*|\.\d+|\d+|\\[a-zA-Z]+|[a-zA-Z]|[-+*/^_(){}\[\]!])")
_FUNCS = {"\\sin": cmath.sin, "\\cos": cmath.cos, "\\tan": cmath.tan, "\\ln": cmath.log, "\\log": cmath.log,
          "\\exp": cmath.exp}
_GREEK = {"\\alpha", "\\beta", "\\gamma", "\\theta", "\\phi", "\\lambda", "\\mu", "\\omega", "\\sigma", "\\tau"}
_TIMES = {"*", "\\cdot", "\\times"}
MAX_BITS = 20_000  # exact powers stop here: 2^{20000} is the largest exact intermediate
POINTS = 3
REL_TOL = 1e-9


class Unsupported(ValueError):
    """The expression uses LaTeX outside the subset read here."""


class _Parser:
    def __init__(self, text: str, point: int):
        self.toks = _tokens(text)
        self.i = 0
        self.point = point

    def peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, want: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (want is not None and tok != want):
            raise Unsupported(f"expected {want or 'more'}, got {tok}")
        self.i += 1
        return tok

    def parse(self) -> Value:
        value = self.expr()
        if self.peek() is not None:
            raise Unsupported(f"unexpected {self.peek()}")
        return value

    def expr(self) -> Value:
        value = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()
            rhs = self.term()
            value = value + rhs if op == "+" else value - rhs
        return value

    def term(self) -> Value:
        value = self.unary()
        while True:
            tok = self.peek()
            if tok in _TIMES or tok in ("/", "\\div"):
                self.take()
                rhs = self.unary()
                value = value * rhs if tok not in ("/", "\\div") else _div(value, rhs)
            elif tok is not None and _starts_atom(tok):  # implicit product: 2x, 3\sqrt{2}, (a)(b)
                value = value * self.power()
            else:
                return value

    def unary(self) -> Value:
        if self.peek() in ("-", "+"):
            return -self.unary() if self.take() == "-" else self.unary()
        return self.power()

    def power(self) -> Value:
        base = self.atom()
        if self.peek() == "^":
            self.take()
            tok = self.peek()
            if tok is not None and tok[0].isdigit() and len(tok) > 1 and "." not in tok:  # x^23 is x^2 * 3
                self.toks[self.i:self.i + 1] = [tok[0], tok[1:]]
            base = _pow(base, self.unary() if self.peek() == "-" else self.atom())
        if self.peek() == "!":
            raise Unsupported("factorial")
        return base

    def group(self) -> Value:
        if self.peek() == "{":
            self.take()
            value = self.expr()
            self.take("}")
            return value
        return self.atom()

    def atom(self) -> Value:
        tok = self.take()
        if tok[0].isdigit() or tok[0] == ".":
            return Fraction(tok)
        if tok in ("(", "{", "["):
            value = self.expr()
            self.take({"(": ")", "{": "}", "[": "]"}[tok])
            return value
        if tok == "\\frac":
            return _div(self.group(), self.group())
        if tok == "\\sqrt":
            index: Value = Fraction(2)
            if self.peek() == "[":
                self.take()
                index = self.expr()
                self.take("]")
            return _pow(self.group(), _div(Fraction(1), index))
        if tok == "\\pi":
            return complex(math.pi)
        if tok == "i" and self.peek() != "_":  # in a final answer, i is the imaginary unit
            return 1j
        if tok in _FUNCS:
            if self.peek() in ("{", "("):
                arg = self.atom()
            else:  # `\sin 3x` is sin(3x): the argument runs over the implicit product that follows
                arg = self.power()
                while (nxt := self.peek()) is not None and _starts_atom(nxt) and nxt not in _FUNCS:
                    arg = arg * self.power()
            return _FUNCS[tok](complex(arg))
        if tok.isalpha() and len(tok) == 1 or tok in _GREEK:
            name = tok
            if self.peek() == "_":  # x_1, a_{n}: one name
                self.take()
                name += "_" + (self.take() if self.peek() != "{" else self._raw_group())
            return _point(name, self.point)
        raise Unsupported(tok)

    def _raw_group(self) -> str:
        self.take("{")
        parts = []
        while self.peek() != "}":
            parts.append(self.take())
        self.take("}")
        return "".join(parts)


def _tokens(text: str) -> list[str]:
    toks, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise Unsupported(f"character {text[pos]!r}")
        toks.append(m.group(1))
        pos = m.end()
    return toks


def _starts_atom(tok: str) -> bool:
    return tok[0].isdigit() or tok in ("(", "\\frac", "\\sqrt", "\\pi") or tok in _FUNCS or tok in _GREEK or (
        len(tok) == 1 and tok.isalpha())


def _point(name: str, k: int) -> Fraction:
    """A rational value for a variable at evaluation point k (deterministic, distinct per name)."""
    h = zlib.crc32(f"{name}:{k}".encode())
    return Fraction(7 + h % 997, 3 + h % 13)


def _div(a: Value, b: Value) -> Value:
    if b == 0:
        raise Unsupported("division by zero at a sample point")
    return a / b


def _pow(base: Value, exp: Value) -> Value:
    if isinstance(exp, Fraction) and exp.denominator == 1 and isinstance(base, Fraction):
        bits = max(base.numerator.bit_length(), base.denominator.bit_length())
        if bits * abs(exp.numerator) > MAX_BITS:
            raise Unsupported("power too large to evaluate")
        if base == 0 and exp < 0:
            raise Unsupported("division by zero at a sample point")
        return base ** exp.numerator
    if abs(complex(exp)) > 1000:
        raise Unsupported("power too large to evaluate")
    try:
        return complex(base) ** complex(exp)
    except (OverflowError, ZeroDivisionError):
        raise Unsupported("power out of range") from None


def _close(a: Value, b: Value) -> bool:
    if isinstance(a, Fraction) and isinstance(b, Fraction):
        return a == b
    a, b = complex(a), complex(b)
    if not (cmath.isfinite(a) and cmath.isfinite(b)):
        raise Unsupported("value out of range")
    return abs(a - b) <= REL_TOL * max(1.0, abs(a), abs(b))


def evaluate_equal(pred: str, gold: str) -> bool:
    """Whether two expressions agree at every sample point (Unsupported where either is outside the subset)."""
    for k in range(POINTS):
        try:
            if not _close(_Parser(pred, k).parse(), _Parser(gold, k).parse()):
                return False
        except (OverflowError, RecursionError, ValueError, ZeroDivisionError) as exc:
            raise exc if isinstance(exc, Unsupported) else Unsupported(str(exc)) from None
    return True

"""Exact values of the answers that are plain numbers, read without SymPy: integers, decimals,
repeating decimals (`0.\\overline{3}`), fractions (`\\frac{a}{b}`, `a/b`), mixed numbers
(`2\\frac{1}{3}`), scientific notation (`1.5\\times10^{3}`, `1.5e3`) and percentages (`50\\%`).
Input is a normalised string (no spaces, `\\dfrac` already `\\frac`)."""
from __future__ import annotations

import re
from fractions import Fraction

MAX_DIGITS = 400  # longer digit strings are left to the guarded symbolic path
_NUM = r"\d+(?:\.\d*)?|\.\d+"
_SIGNED = rf"[-+]?(?:{_NUM})"
_PATTERNS = [
    ("repeating", re.compile(r"(?P<int>\d*)\.(?P<fix>\d*)\\overline\{(?P<rep>\d+)\}")),
    ("mixed", re.compile(r"(?P<int>\d+)\\frac\{(?P<a>\d+)\}\{(?P<b>\d+)\}")),
    ("frac", re.compile(rf"\\frac\{{(?P<a>{_SIGNED})\}}\{{(?P<b>{_SIGNED})\}}")),
    ("slash", re.compile(rf"(?P<a>{_NUM})/(?P<b>{_NUM})")),
    ("sci", re.compile(rf"(?P<m>{_NUM})(?:\\times|\\cdot|\*)10\^(?:\{{(?P<e1>[-+]?\d{{1,3}})\}}|(?P<e2>\d))")),
    ("enot", re.compile(rf"(?P<m>{_NUM})[eE](?P<e>[-+]?\d{{1,3}})")),
    ("pow10", re.compile(r"10\^(?:\{(?P<e1>[-+]?\d{1,3})\}|(?P<e2>\d))")),
    ("plain", re.compile(rf"(?P<m>{_NUM})")),
]
_SIGN_PCT = re.compile(r"(?P<sign>[-+]?)(?P<body>.*?)(?P<pct>\\%)?")


def _value(kind: str, m: re.Match[str]) -> Fraction | None:
    g = m.groupdict()
    if kind == "repeating":
        whole = Fraction(int(g["int"] or 0))
        fix, rep = g["fix"], g["rep"]
        return whole + Fraction(int(fix + rep) - int(fix or 0), (10 ** len(rep) - 1) * 10 ** len(fix))
    if kind == "mixed":
        a, b = int(g["a"]), int(g["b"])
        return Fraction(int(g["int"])) + Fraction(a, b) if 0 < a < b else None
    if kind in ("frac", "slash"):
        b = Fraction(g["b"])
        return Fraction(g["a"]) / b if b else None
    if kind in ("sci", "pow10"):
        e = int(g["e1"] or g["e2"])
        return Fraction(g.get("m") or 1) * Fraction(10) ** e
    if kind == "enot":
        return Fraction(g["m"]) * Fraction(10) ** int(g["e"])
    return Fraction(g["m"])


def parse_number(s: str) -> tuple[Fraction, bool] | None:
    """(exact value, written as a percent) when `s` is one plain number, else None."""
    if len(s) > MAX_DIGITS or not s:
        return None
    m = _SIGN_PCT.fullmatch(s)
    body = m.group("body")
    if body.startswith("{") and body.endswith("}"):
        body = body[1:-1]
    for kind, pat in _PATTERNS:
        hit = pat.fullmatch(body)
        if hit:
            value = _value(kind, hit)
            if value is None:
                return None
            return (-value if m.group("sign") == "-" else value), m.group("pct") is not None
    return None


def format_number(value: Fraction, percent: bool = False) -> str:
    """The canonical string of an exact number: `12`, `-\\frac{1}{9}`, `50\\%`."""
    sign = "-" if value < 0 else ""
    v = abs(value)
    body = str(v.numerator) if v.denominator == 1 else f"\\frac{{{v.numerator}}}{{{v.denominator}}}"
    return f"{sign}{body}" + ("\\%" if percent else "")

"""The reference EoT solver of earlier work, kept only as a baseline (parity test, benchmark).

As NOTES.md describes it: every line containing `=` is split at its first `=`, both sides go
through `sympy.sympify`, `sympy.solve(equations, dict=True)` runs with a 5 s limit, and the answer
is the first solution's value of `ans`. `sympify` evaluates model text: never use this on
untrusted input outside a test.
"""
from __future__ import annotations

import sympy

from solvers.answers import to_number
from solvers.eot.fallback import time_limit
from solvers.outcome import Number


def reference_values(text: str, timeout: float = 5.0) -> list[Number] | None:
    """The value of `ans` in each of the reference's solutions (None where it fails)."""
    def run() -> list[Number] | None:
        equations = []
        for line in text.splitlines():
            if "=" in line:
                lhs, rhs = line.split("=", 1)
                equations.append(sympy.Eq(sympy.sympify(lhs), sympy.sympify(rhs)))
        solutions = sympy.solve(equations, dict=True)
        values = [to_number(s[sympy.Symbol("ans")]) for s in solutions if sympy.Symbol("ans") in s]
        return values if solutions and len(values) == len(solutions) else None

    try:
        return time_limit(run, timeout)
    except Exception:  # noqa: BLE001 - any failure of the reference is "no answer"
        return None


def reference_solve(text: str, timeout: float = 5.0) -> Number | None:
    """The reference answer: the first solution's `ans`, or None where it gives none."""
    values = reference_values(text, timeout)
    return values[0] if values else None

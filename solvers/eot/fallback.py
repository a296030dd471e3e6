"""The slow path: SymPy for what exact linear algebra left unsolved, under a time limit.

`solve_eot` runs this only in a sandbox child (solvers/executor.py), which its zygote kills at the
limit whatever SymPy does; the timer here ends it a little earlier with a clean `timeout`.
Time limit: in the main thread (a sandbox child, or a direct caller's) a `SIGALRM` timer
interrupts SymPy; an outer timer that was already armed is re-armed afterwards. Elsewhere (a
non-main thread, or a platform without `setitimer`) SymPy runs in a daemon thread that is waited
for `seconds`; on a timeout the caller gets `TimeoutError` at once but that thread runs on until
SymPy returns (Python threads cannot be killed), so prefer processes for parallelism.
"""
from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import sympy

from solvers.eot.parser import EotError
from solvers.outcome import Status

T = TypeVar("T")


class _Alarm(BaseException):
    """Raised by the timer; a BaseException so that SymPy's `except Exception` cannot swallow it."""


def _on_alarm(signum: int, frame: object) -> None:
    raise _Alarm


def time_limit(fn: Callable[[], T], seconds: float) -> T:
    """`fn()`, or TimeoutError after `seconds`."""
    if seconds <= 0:
        raise TimeoutError
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
        previous = signal.signal(signal.SIGALRM, _on_alarm)
        outer, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
        start = time.monotonic()
        try:
            return fn()
        except _Alarm:
            raise TimeoutError from None
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            if outer:  # somebody else's timer was running: give it back what is left of it
                signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - start), 1e-3))
    box: list = []

    def target() -> None:
        try:
            box.append((True, fn()))
        except BaseException as exc:  # handed to the caller below
            box.append((False, exc))

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(seconds)
    if not box:
        raise TimeoutError
    ok, value = box[0]
    if not ok:
        raise value
    return value


def is_zero(e: sympy.Expr) -> bool:
    """Whether a closed-form number is zero (to 1e-9, evaluated with 30 digits)."""
    try:
        return abs(complex(sympy.N(e, 30))) <= 1e-9
    except TypeError:  # not a number (nan, zoo)
        return False


def _univariate(equations: list[sympy.Expr], var: sympy.Symbol) -> list[dict] | None:
    """Solutions of rational equations in one unknown via polynomial roots; None if not that case."""
    candidates: list[sympy.Expr] | None = None
    dens = []
    for eq in equations:
        num, den = sympy.together(eq).as_numer_denom()
        dens.append(den)
        if candidates is not None:
            continue
        try:
            poly = sympy.Poly(num, var)
        except sympy.PolynomialError:
            return None
        if not all(c.is_number for c in poly.coeffs()):
            return None
        if poly.degree() <= 0:
            continue  # a constant: checked below like every equation
        roots = sympy.roots(poly)
        if sum(roots.values()) < poly.degree():
            return None  # SymPy found no closed form for some roots
        candidates = list(roots)
    if candidates is None:
        return None
    return [{var: r} for r in candidates
            if all(is_zero(eq.subs(var, r)) for eq in equations)
            and not any(is_zero(d.subs(var, r)) for d in dens)]


def solve_nonlinear(equations: list[sympy.Expr]) -> list[dict]:
    """All solutions (as {unknown: value}) of `equations`, exact where SymPy finds them."""
    # Eliminate unknowns that some equation has linearly with a constant coefficient (`d = sqrt(2)`).
    eliminated: dict[sympy.Symbol, sympy.Expr] = {}
    rest = list(equations)
    progress = True
    while progress:
        progress = False
        for eq in rest:
            for s in sorted(eq.free_symbols, key=lambda s: s.name):
                slope = eq.diff(s)
                if slope.is_number and slope != 0:
                    value = sympy.expand(s - eq / slope)
                    rest = [e.subs(s, value) for e in rest if e is not eq]
                    eliminated = {k: v.subs(s, value) for k, v in eliminated.items()}
                    eliminated[s] = value
                    progress = True
                    break
            if progress:
                break
    for eq in rest:
        if not eq.free_symbols and not is_zero(eq):
            return []
    rest = [eq for eq in rest if eq.free_symbols]
    unknowns = sorted(set().union(*(eq.free_symbols for eq in rest)), key=lambda s: s.name)
    if not rest:
        solutions: list[dict] | None = [{}]
    elif len(unknowns) == 1:
        solutions = _univariate(rest, unknowns[0])
    else:
        solutions = None
    if solutions is None:
        try:
            solutions = sympy.solve(rest, unknowns, dict=True)
        except (NotImplementedError, ValueError, TypeError, sympy.PolynomialError) as exc:
            raise EotError(Status.UNSUPPORTED, f"SymPy cannot solve the non-linear part: {exc}"[:300]) from None
    return [{**sol, **{k: v.subs(sol) for k, v in eliminated.items()}} for sol in solutions]

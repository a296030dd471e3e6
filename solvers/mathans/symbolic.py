"""The symbolic comparison: LaTeX -> SymPy through latex2sympy2_extended's ANTLR grammar (never
`eval`/`sympify` on the text), then math-verify's `verify` (sets, intervals, tuples, matrices,
relations, expressions). Runs inside a worker process (solvers/mathans/worker.py) that holds the
time and memory limits: neither library's own signal-based timeout is used."""
from __future__ import annotations

import logging
from functools import lru_cache

from latex2sympy2_extended import NormalizationConfig, latex2sympy
from math_verify import verify
from math_verify.grader import should_treat_as_complex
from sympy import Basic, Rational, factorial, preorder_traversal

logging.getLogger("math_verify").setLevel(logging.ERROR)

# The answer arrives extracted and normalised (solvers/mathans/normalize.py); latex2sympy's basic
# clean-up stays on, its unit stripping is off (it reads the `c` of `6+9c` as a unit). (math-verify's `parse` is not used: its
# extraction heuristics are for whole solutions and cut answers such as `6+9c` to `6+9`.)
_NORMALISATION = NormalizationConfig(
    basic_latex=True, units=False, malformed_operators=False, nits=True, boxed="all", equations=False)


class Unparsable(ValueError):
    """The answer is not LaTeX the grammar reads."""


@lru_cache(maxsize=4096)  # gold answers repeat across samples: parse each once
def parse_latex(answer: str) -> Basic:
    try:
        return latex2sympy(answer, is_real=not should_treat_as_complex(answer), normalization_config=_NORMALISATION)
    except Exception as exc:  # the grammar's errors have many types
        raise Unparsable(f"{answer[:80]} ({type(exc).__name__})") from None


def _exact(x: object) -> bool:
    """A number made only of rationals and factorials (`\\frac{1}{2004!}`): compared exactly."""
    def small(a: Basic) -> bool:
        if isinstance(a, Rational) or a.is_Add or a.is_Mul:
            return True
        if isinstance(a, factorial):
            return a.args[0].is_Integer and a.args[0] <= 100_000
        return a.is_Pow and a.exp.is_Integer and abs(a.exp) <= 10_000

    return isinstance(x, Basic) and x.is_number and all(small(a) for a in preorder_traversal(x))


def symbolic_equal(pred: str, gold: str) -> bool:
    """Whether two normalised LaTeX answers are mathematically equal (Unparsable if either is not LaTeX)."""
    g = parse_latex(gold)
    p = parse_latex(pred)
    if _exact(g) and _exact(p):
        return g.doit() == p.doit()  # verify rounds to 6 decimals: 1/2004! would equal 2/2004!
    return verify(g, p, timeout_seconds=None)

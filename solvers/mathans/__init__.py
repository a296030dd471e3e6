"""LaTeX answers (MATH and the like): extract the final answer of a solution, normalise it, and
decide whether it equals a gold answer mathematically, under a per-answer time limit.

    >>> from solvers.mathans import equivalent
    >>> equivalent(r"\\dfrac{1}{9}", r"\\frac19"), equivalent("3, -3", "-3,3")
    (True, True)
"""
from solvers.mathans.compare import (
    AnswerStatus,
    Checker,
    Verdict,
    check,
    check_solution,
    default_checker,
    equivalent,
    quick_equal,
)
from solvers.mathans.extract import extract_boxed, extract_final
from solvers.mathans.normalize import normalize

__all__ = [
    "AnswerStatus", "Checker", "Verdict", "check", "check_solution", "default_checker", "equivalent", "quick_equal",
    "extract_boxed", "extract_final", "normalize",
]

"""The symbolic comparison: LaTeX -> SymPy through latex2sympy2_extended's ANTLR grammar (never
`eval`/`sympify` on the text), then math-verify's `verify` (sets, intervals, tuples, matrices,
relations, expressions). Runs inside a worker process (solvers/mathans/worker.py) that holds the
time and memory limits: neither library's own signal-based timeout is used."""
from __future__ import annotations

import logging
from functools import lru_cache

from latex2sympy2_extended import NormalizationConfig
from math_verify import LatexExtractionConfig, parse, verify

logging.getLogger("math_verify").setLevel(logging.ERROR)

# The answer arrives normalised (solvers/mathans/normalize.py); math-verify's own clean-up of units
# and boxes stays on for what ours leaves.
_CONFIG = [LatexExtractionConfig(normalization_config=NormalizationConfig(
    basic_latex=True, units=True, malformed_operators=False, nits=True, boxed="all", equations=False))]


class Unparsable(ValueError):
    """The answer is not LaTeX the grammar reads."""


@lru_cache(maxsize=4096)  # gold answers repeat across samples: parse each once
def parse_latex(answer: str) -> tuple:
    parsed = parse(f"${answer}$", extraction_config=_CONFIG, parsing_timeout=None)
    if not parsed:
        raise Unparsable(answer[:80])
    return tuple(parsed)


def symbolic_equal(pred: str, gold: str) -> bool:
    """Whether two normalised LaTeX answers are mathematically equal (Unparsable if either is not LaTeX)."""
    g = parse_latex(gold)
    p = parse_latex(pred)
    return verify(list(g), list(p), timeout_seconds=None)

"""Final-answer extraction, normalisation and comparison.

Comparison rule (the Xwin-Math / XoT convention, see NOTES.md): when the gold answer is an
integer the prediction must equal it (up to float noise of 1e-9 relative, so that a program's
`10 / 3 * 3` still counts); otherwise the prediction must lie within a relative tolerance of
1e-3 of the gold, which accepts answers rounded to three or more significant digits.
"""
from __future__ import annotations

import math
import re

from solvers.outcome import Number, Outcome, Status

REL_TOL = 1e-3
INT_NOISE = 1e-9

# A number as people and models write it: optional sign and $, thousands commas, decimals,
# an optional fraction `a/b` and an optional trailing percent.
_NUMBER_RE = re.compile(
    r"(?:(?<![\w)])(?P<sign>[-+])(?=[$.\d]))?\$?\s?(?P<num>(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|\.\d+)"
    r"(?:\s?/\s?(?P<den>\d+(?:\.\d+)?))?(?P<pct>\s?%)?"
)
_FRAC_RE = re.compile(r"\\d?frac\{\s*(-?[\d.,]+)\s*\}\{\s*(-?[\d.,]+)\s*\}")
_MARKERS = re.compile(r"the (?:final )?answer is|####|\\boxed\{", re.IGNORECASE)
_DASHES = str.maketrans({"\u2212": "-", "\u2013": "-", "\u2014": "-", "\u00a0": " ", "\u202f": " "})


def to_number(value: object) -> Number | None:
    """Normalise a computed value to int (when integral) or float; None if it is not a number.

    The result is always a plain `int` or `float` (never a subclass, whose methods could lie)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return int.__int__(value)
    try:  # numpy / sympy scalars, Fraction and Decimal know how to become a float
        value = float.__float__(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    if not math.isfinite(value):
        return None
    if value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _match_value(m: re.Match[str]) -> tuple[float, bool] | None:
    num = float(m.group("num").replace(",", ""))
    if m.group("den") is not None:
        den = float(m.group("den"))
        if den == 0:
            return None
        num /= den
    if m.group("sign") == "-":
        num = -num
    return num, m.group("pct") is not None


def parse_number(text: str) -> Number | None:
    """The first number in `text` (`$1,234.50`, `9 (apples)`, `-3`, `3/4`, `25%` -> 25)."""
    found = _first_number(text.translate(_DASHES))
    return None if found is None else to_number(found[0])


def _first_number(text: str) -> tuple[float, bool] | None:
    frac = _FRAC_RE.search(text)
    m = _NUMBER_RE.search(text)
    if frac and (m is None or frac.start() <= m.start()):
        num, den = (float(g.replace(",", "")) for g in frac.groups())
        return (num / den, False) if den else None
    return _match_value(m) if m else None


def _last_number(text: str) -> tuple[float, bool] | None:
    last = None
    for m in _NUMBER_RE.finditer(text):
        last = m
    return _match_value(last) if last else None


def extract_answer(text: str) -> Outcome:
    """The final answer of a chain-of-thought rationale.

    Looks after the last `The answer is` / `####` / `\\boxed{`; without a marker, takes the last
    number of the text. A trailing `%` is reported in `detail` ("percent") so that callers can
    accept either reading (25 or 0.25) where the gold decides.
    """
    if not isinstance(text, str) or not text.strip():
        return Outcome.fail(Status.NO_ANSWER, "empty rationale")
    text = text.translate(_DASHES)
    markers = list(_MARKERS.finditer(text))
    if markers:
        tail = text[markers[-1].end():]
        found = _first_number(tail)
        if found is None:
            return Outcome.fail(Status.NON_NUMERIC, f"no number after {markers[-1].group(0)!r}")
    else:
        found = _last_number(text)
        if found is None:
            return Outcome.fail(Status.NO_ANSWER, "no number in rationale")
    value = to_number(found[0])
    if value is None:
        return Outcome.fail(Status.NON_NUMERIC, "answer is not finite")
    return Outcome(value, Status.OK, "percent" if found[1] else "")


def parse_gold(value: object) -> Number | None:
    """A gold answer as datasets store it: a number, `... #### 1,234` (GSM8K), `9 (apples)` (ASDiv).

    Returns None when the gold is not exactly one number (ratios `2:3`, several values, text).
    """
    if isinstance(value, str):
        text = value.translate(_DASHES).strip()
        if "####" in text:
            text = text.rsplit("####", 1)[1].strip()
        # Drop a parenthesised unit, then demand that what is left is one number and nothing else.
        text = re.sub(r"\s*\([^()]*\)\s*$", "", text).strip().rstrip(".")
        m = _NUMBER_RE.fullmatch(text.replace(" ", "")) if text else None
        if m is None:
            return None
        found = _match_value(m)
        return None if found is None else to_number(found[0])
    return to_number(value)


def is_correct(prediction: object, gold: object, *, percent: bool = False) -> bool:
    """Whether `prediction` matches `gold` (see the module docstring for the rule).

    With `percent=True` (the prediction was written `N%`), N/100 is accepted too.
    """
    pred, ref = to_number(prediction), to_number(gold)
    if pred is None or ref is None:
        return False
    if _close(pred, ref):
        return True
    return percent and _close(to_number(pred / 100) or 0, ref)


def _close(pred: Number, gold: Number) -> bool:
    if isinstance(gold, int):
        if isinstance(pred, int):
            return pred == gold
        return abs(pred - gold) <= INT_NOISE * max(1.0, abs(gold))
    return math.isclose(pred, gold, rel_tol=REL_TOL, abs_tol=1e-12)


def outcome_correct(outcome: Outcome, gold: object) -> bool | None:
    """`correct` for a record: None without gold, else whether the outcome's answer matches (a
    string gold is a LaTeX answer: compared mathematically by solvers.grading)."""
    if isinstance(gold, str):
        from solvers.grading import grade  # it builds on this module

        return grade(outcome, gold).correct
    if to_number(gold) is None:
        return None
    return outcome.is_ok and is_correct(outcome.prediction, gold, percent=outcome.detail == "percent")

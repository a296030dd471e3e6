"""Whether a predicted answer equals a gold answer mathematically.

Steps, cheapest first: (1) canonical strings (normalize.py) equal, or both plain numbers (exact
rationals, a percent read either way), numbers in a base, or a text / multiple-choice gold:
decided at once; (2) tuples, intervals, lists and sets split at top-level commas and compared
element by element the same way; (3) expressions in the subset evaluate.py reads, compared at
sample points; (4) everything else goes to the symbolic path (symbolic.py) in a worker process
under a per-answer time limit, after size and nesting guards.
"""
from __future__ import annotations

import atexit
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from fractions import Fraction
from functools import lru_cache

from solvers import answers
from solvers.mathans.evaluate import Unsupported, evaluate_equal
from solvers.mathans.extract import extract_final
from solvers.mathans.normalize import drop_lhs, is_text, normalize, text_of
from solvers.mathans.numbers import format_number, parse_number
from solvers.mathans.worker import WorkerPool

TIMEOUT = 2.0  # seconds per symbolic comparison
MAX_SYMBOLIC_LEN = 1_000  # characters; MATH gold answers are at most ~160
MAX_DEPTH = 12  # bracket nesting; the ANTLR grammar slows sharply with deep parentheses
REL_TOL = Fraction(1, 10**6)  # a decimal for a value that has none (0.333333 for 1/3)
_BASE_NUMBER = re.compile(r"([0-9A-Z]+)_\{?(\d{1,2})\}?")


class AnswerStatus(str, Enum):
    """The same strings as solvers.Status where they overlap."""

    OK = "ok"  # compared; `equal` is the verdict
    NO_ANSWER = "no-answer"
    UNPARSABLE = "unparsable"
    TIMEOUT = "timeout"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Verdict:
    equal: bool
    status: AnswerStatus
    prediction: str  # the normalised predicted answer ('' when none)
    gold: str  # the normalised gold answer
    detail: str = ""


def _depth(s: str) -> int:
    depth = most = 0
    for c in s:
        if c in "([{":
            depth += 1
            most = max(most, depth)
        elif c in ")]}":
            depth -= 1
    return most


_MATRIX = re.compile(r"\\begin\{([pbB]?matrix)\}(.*)\\end\{\1\}", re.DOTALL)  # not vmatrix: a determinant


def _split_top(s: str) -> tuple[str, list[str], str] | None:
    """(opening bracket, items, closing bracket) of `(a,b)`, `[a,b)`, `\\{a,b\\}`, `a,b`, a matrix
    (`matrix2x3`, its cells row by row) or a union of intervals (`cup`); None for one plain item."""
    if m := _MATRIX.fullmatch(s):
        rows = [r for r in re.split(r"\\\\", m.group(2)) if r.strip()]
        cells = [r.split("&") for r in rows]
        return f"matrix{len(rows)}x{max(map(len, cells))}", [c for row in cells for c in row], ""
    if len(parts := _top_level(s, "\\cup")) > 1:
        return "cup", [x for part in parts for x in _union_parts(part)], ""
    op = cl = ""
    body = s
    for o in ("\\{", "(", "["):
        if s.startswith(o):
            for c in ("\\}", ")", "]"):
                if s.endswith(c) and _closes_at_end(s, len(o)):
                    op, cl, body = o, c, s[len(o):len(s) - len(c)]
                    break
            break
    items = _top_level(body, ",")
    if len(items) < 2 and not op:
        return None
    return op, items, cl


def _union_parts(s: str) -> list[str]:
    """`((a)\\cup(b))` -> [`(a)`, `(b)`]: unions in parentheses (as SymPy prints them) flattened."""
    if s.startswith("(") and s.endswith(")") and _closes_at_end(s, 1):
        inner = _top_level(s[1:-1], "\\cup")
        if len(inner) > 1:
            return [x for part in inner for x in _union_parts(part)]
    return [s]


def _top_level(s: str, sep: str) -> list[str]:
    """`s` split at each `sep` outside brackets."""
    items, depth, start, i = [], 0, 0, 0
    while i < len(s):
        c = s[i]
        if s.startswith(sep, i) and depth == 0:
            items.append(s[start:i])
            i = start = i + len(sep)
            continue
        if c == "\\" and s[i + 1:i + 2] in ("{", "}"):
            depth += 1 if s[i + 1] == "{" else -1
            i += 2
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        i += 1
    return items + [s[start:]]


def _closes_at_end(s: str, start: int) -> bool:
    """Whether the bracket opened at s[0] stays open until the last character (`(1)+(2)` does not)."""
    depth = 1
    i = start
    while i < len(s):
        c = s[i]
        if c == "\\" and s[i + 1:i + 2] in ("{", "}"):
            c, i = s[i + 1], i + 1
            depth += 1 if c == "{" else -1
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        if depth == 0:
            return i >= len(s) - 1
        i += 1
    return False


def _terminates(q: Fraction) -> bool:
    d = q.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1


def _numbers_equal(p: tuple[Fraction, bool], g: tuple[Fraction, bool]) -> bool:
    """Exact, with a percent read either way (50% = 50 = 0.5); a tolerance only where one side has
    no finite decimal and the other is one (1/3 vs 0.333333, not 4014013 vs 4014014)."""
    readings = {p[0]} | ({p[0] / 100} if p[1] and not g[1] else set())
    golds = {g[0]} | ({g[0] / 100} if g[1] and not p[1] else set())
    return any(
        a == b or (_terminates(a) != _terminates(b) and abs(a - b) <= REL_TOL * abs(b))
        for a in readings for b in golds
    )


def _base_value(s: str) -> int | None:
    """The value of a number written in a base, `1101_4` or `25_{6}`; None if `s` is not one."""
    m = _BASE_NUMBER.fullmatch(s)
    if not m or not 2 <= int(m.group(2)) <= 36:
        return None
    try:
        return int(m.group(1), int(m.group(2)))
    except ValueError:  # a digit the base does not have
        return None


def fast_equal(pred: str, gold: str) -> bool | None:
    """The verdict on two normalised answers where strings and exact numbers decide; None if they cannot."""
    if pred == gold:
        return True
    if len(pred) > MAX_SYMBOLIC_LEN or len(gold) > MAX_SYMBOLIC_LEN:
        return None  # the caller's size guard gives the verdict
    g, p = parse_number(gold), parse_number(pred)
    if g is not None and p is not None:
        return _numbers_equal(p, g)
    if (g is not None and g[1]) != (p is not None and p[1]):  # a percent against an expression: both readings
        number, other = (g, pred) if g is not None else (p, gold)
        votes = {fast_equal(other, format_number(v)) for v in (number[0], number[0] / 100)}
        return True if True in votes else (False if votes == {False} else None)
    gb, pb = _base_value(gold), _base_value(pred)
    if gb is not None:  # asked for a base: the answer must be written in one (not in decimal)
        return pb == gb
    if pb is not None and g is not None:
        return Fraction(pb) == g[0]
    if is_text(gold):
        return text_of(pred) == text_of(gold)
    if is_text(pred) and g is not None:
        return False
    gs, ps = _split_top(gold), _split_top(pred)
    if gs is None and ps is None:
        if gold.count("=") == 1 and pred.count("=") == 1:  # equations: the same left side, equal right sides
            (gl, gr), (pl, pr) = gold.split("="), pred.split("=")
            return fast_equal(pr, gr) if gl == pl else None
        return _evaluated(pred, gold)
    gs, ps = gs or ("", [gold], ""), ps or ("", [pred], "")
    unordered = ("", "\\{", "cup")
    if (gs[0], gs[2]) != (ps[0], ps[2]):
        if gs[0] in ("(", "[") and ps[0] in ("(", "[") and len(gs[1]) == len(ps[1]):
            return False  # an interval with another end, or a tuple for an interval
        if gs[0] not in unordered or ps[0] not in unordered:
            return None
    return _match_items(ps[1], gs[1], ordered=gs[0] not in unordered)


def _evaluated(pred: str, gold: str) -> bool | None:
    """evaluate.py's verdict on two expressions, None outside its subset or past the guards."""
    if _too_big(pred) or _too_big(gold):
        return None
    try:
        return evaluate_equal(pred, gold)
    except Unsupported:
        return None


def _too_big(s: str) -> str:
    """Why an answer is too big for parsing ('' when it is not)."""
    if len(s) > MAX_SYMBOLIC_LEN:
        return f"too long ({len(s)} chars)"
    return "nested too deep" if _depth(s) > MAX_DEPTH else ""


def _match_items(pred: list[str], gold: list[str], ordered: bool) -> bool | None:
    """Items compared in order (tuples, intervals, matrices) or as sets (lists, `\\{...\\}`)."""
    if ordered:
        if len(pred) != len(gold):
            return False
        votes = [fast_equal(p, g) for p, g in zip(pred, gold)]
        return False if False in votes else (None if None in votes else True)
    undecided = False
    for mine, theirs in ((pred, gold), (gold, pred)):  # each item of each side is on the other side
        for x in mine:
            votes = [fast_equal(x, y) for y in theirs]
            if True not in votes:
                undecided |= None in votes
                if None not in votes:
                    return False
    return None if undecided else True


def _prepare(pred: object, gold: object) -> tuple[str, str]:
    g = normalize(gold)
    p = normalize(pred)
    if "=" not in g:  # a gold that is not an equation: `y = 2x+3` answers `2x+3`, `x=2, x=3` answers `2, 3`
        p = ",".join(drop_lhs(x) for x in _top_level(p, ",")) if len(p) <= MAX_SYMBOLIC_LEN else p
    if "\\in" in g and "=" not in g:
        g = drop_lhs(g)
    return p, g


@lru_cache(maxsize=65_536)
def quick_equal(pred: str, gold: str) -> bool | None:
    """The verdict where strings, exact numbers and evaluation at points decide, in this process
    (no worker, no time limit needed); None where only the symbolic path could. For grouping
    answers (majority votes), where an undecided pair simply stays two answers."""
    p, g = _prepare(pred, gold)
    if _too_big(p) or _too_big(g):
        return p == g
    return fast_equal(p, g)


class Checker:
    """Compares answers; symbolic comparisons run in `workers` processes, `timeout` s each (hard)."""

    def __init__(self, timeout: float = TIMEOUT, workers: int = 1):
        self.pool = WorkerPool(workers, timeout)
        self._lock = threading.Lock()

    def check(self, pred: object, gold: object) -> Verdict:
        return self.check_many([(pred, gold)])[0]

    def check_many(self, pairs: Iterable[tuple[object, object]]) -> list[Verdict]:
        """Verdicts for (predicted answer, gold answer) pairs, in order. A gold that is a Python
        number keeps the numeric rule of solvers.answers (GSM8K and the like)."""
        out: list[Verdict | None] = []
        pending: list[tuple[int, str, str]] = []
        for pred, gold in pairs:
            verdict, sym = self._fast(pred, gold)
            if verdict is None:
                pending.append((len(out), *sym))
            out.append(verdict)
        if pending:
            def done(k: int, result: tuple[str, bool, str]) -> None:
                i, p, g = pending[k]
                out[i] = Verdict(result[1], AnswerStatus(result[0]), p, g, result[2])

            with self._lock:
                self.pool.run([(p, g) for _, p, g in pending], done)
        return out  # type: ignore[return-value]

    def _fast(self, pred: object, gold: object) -> tuple[Verdict | None, tuple[str, str]]:
        if pred is None or (isinstance(pred, str) and not pred.strip()):
            return Verdict(False, AnswerStatus.NO_ANSWER, "", normalize(gold), "no answer"), ("", "")
        if isinstance(gold, (int, float)) and not isinstance(gold, bool):
            return _numeric_gold(pred, gold), ("", "")
        p, g = _prepare(pred, gold)
        verdict = fast_equal(p, g)
        if verdict is not None:
            return Verdict(verdict, AnswerStatus.OK, p, g), ("", "")
        for side, s in (("prediction", p), ("gold", g)):
            if why := _too_big(s):
                return Verdict(False, AnswerStatus.UNPARSABLE, p[:200], g[:200], f"{side} {why}"), ("", "")
        return None, (p, g)

    def close(self) -> None:
        self.pool.close()

    def __enter__(self) -> "Checker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _numeric_gold(pred: object, gold: int | float) -> Verdict:
    """A numeric gold: today's rule, unchanged (answers.is_correct with its percent reading)."""
    if isinstance(pred, (int, float)) and not isinstance(pred, bool):
        value, percent = pred, False
    elif (found := parse_number(normalize(pred))) is not None:
        value, percent = answers.to_number(found[0]), found[1]
    elif (value := answers.parse_number(str(pred))) is not None:  # `9 (apples)`: today's reading
        percent = False
    else:
        return Verdict(False, AnswerStatus.UNPARSABLE, normalize(pred), str(gold), "not a number")
    return Verdict(answers.is_correct(value, gold, percent=percent), AnswerStatus.OK, str(value), str(gold))


_default: Checker | None = None
_default_lock = threading.Lock()


def default_checker() -> Checker:
    """The process-wide checker `check` and `equivalent` use (one worker, TIMEOUT s)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Checker()
            atexit.register(_default.close)
        return _default


def check(pred: object, gold: object) -> Verdict:
    """The verdict on a predicted answer (a LaTeX string or a number) against a gold answer."""
    return default_checker().check(pred, gold)


def equivalent(pred: object, gold: object) -> bool:
    """Whether `pred` equals `gold` mathematically (see check for the reason when not)."""
    return check(pred, gold).equal


def check_solution(solution: str, gold: object) -> Verdict:
    """Extract the final answer of a model's solution (extract_final), then check it."""
    return check(extract_final(solution), gold)

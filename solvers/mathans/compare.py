"""Whether a predicted answer equals a gold answer mathematically.

Three steps, cheapest first: (1) canonical strings (normalize.py) equal, or both plain numbers
(exact rationals, a percent read either way), or a text / multiple-choice gold: decided at once;
(2) tuples, intervals, lists and sets split at top-level commas and compared element by element
the same way; (3) everything else goes to the symbolic path (symbolic.py) in a worker process
under a per-answer time limit, after size and nesting guards.
"""
from __future__ import annotations

import atexit
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from fractions import Fraction

from solvers import answers
from solvers.mathans.extract import extract_final
from solvers.mathans.normalize import drop_lhs, is_text, normalize, text_of
from solvers.mathans.numbers import parse_number
from solvers.mathans.worker import WorkerPool

TIMEOUT = 2.0  # seconds per symbolic comparison
MAX_SYMBOLIC_LEN = 1_000  # characters; MATH gold answers are at most ~160
MAX_DEPTH = 12  # bracket nesting; the ANTLR grammar slows sharply with deep parentheses
REL_TOL = Fraction(1, 10**6)  # for numbers that are not exactly equal (0.333333 vs 1/3)


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


def _split_top(s: str) -> tuple[str, list[str], str] | None:
    """(opening bracket, items, closing bracket) of `(a,b)`, `[a,b)`, `\\{a,b\\}` or `a,b`; None if one item."""
    op = cl = ""
    body = s
    for o in ("\\{", "(", "["):
        if s.startswith(o):
            for c in ("\\}", ")", "]"):
                if s.endswith(c) and _closes_at_end(s, len(o)):
                    op, cl, body = o, c, s[len(o):len(s) - len(c)]
                    break
            break
    items, depth, start = [], 0, 0
    i = 0
    while i < len(body):
        c = body[i]
        if c == "\\" and body[i + 1:i + 2] in ("{", "}"):
            depth += 1 if body[i + 1] == "{" else -1
            i += 2
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == "," and depth == 0:
            items.append(body[start:i])
            start = i + 1
        i += 1
    items.append(body[start:])
    if len(items) < 2 and not op:
        return None
    return op, items, cl


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


def _numbers_equal(p: tuple[Fraction, bool], g: tuple[Fraction, bool]) -> bool:
    readings = {p[0]} | ({p[0] / 100} if p[1] else set())
    golds = {g[0]} | ({g[0] / 100} if g[1] else set())
    if p[1] and g[1]:
        readings, golds = {p[0]}, {g[0]}
    return any(a == b or (b != 0 and abs(a - b) <= REL_TOL * abs(b)) for a in readings for b in golds)


def fast_equal(pred: str, gold: str) -> bool | None:
    """The verdict on two normalised answers where strings and exact numbers decide; None if they cannot."""
    if pred == gold:
        return True
    g, p = parse_number(gold), parse_number(pred)
    if g is not None and p is not None:
        return _numbers_equal(p, g)
    if is_text(gold):
        return text_of(pred) == text_of(gold)
    if is_text(pred) and g is not None:
        return False
    gs, ps = _split_top(gold), _split_top(pred)
    if gs is None or ps is None or len(gs[1]) != len(ps[1]) or (gs[0], gs[2]) != (ps[0], ps[2]):
        return None
    verdicts = _match_items(ps[1], gs[1], ordered=gs[0] not in ("", "\\{"))
    if verdicts is True or verdicts is False:
        return verdicts
    return None


def _match_items(pred: list[str], gold: list[str], ordered: bool) -> bool | None:
    if ordered:
        votes = [fast_equal(p, g) for p, g in zip(pred, gold)]
        if all(v is True for v in votes):
            return True
        return False if False in votes and all(parse_number(x) is not None for x in pred + gold) else None
    left = list(gold)
    for p in pred:
        hit = next((i for i, g in enumerate(left) if fast_equal(p, g) is True), None)
        if hit is None:
            return False if all(parse_number(x) is not None for x in pred + gold) else None
        left.pop(hit)
    return True


def _prepare(pred: object, gold: object) -> tuple[str, str]:
    g = normalize(gold)
    p = normalize(pred)
    if "=" not in g:  # a gold that is not an equation: `y = 2x+3` answers `2x+3`
        p = drop_lhs(p)
    if "\\in" in g and "=" not in g:
        g = drop_lhs(g)
    return p, g


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
            why = f"{side} too long ({len(s)} chars)" if len(s) > MAX_SYMBOLIC_LEN else (
                f"{side} nested too deep" if _depth(s) > MAX_DEPTH else "")
            if why:
                return Verdict(False, AnswerStatus.UNPARSABLE, p[:200], g[:200], why), ("", "")
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
    else:
        found = parse_number(normalize(pred))
        if found is None:
            return Verdict(False, AnswerStatus.UNPARSABLE, normalize(pred), str(gold), "not a number")
        value, percent = answers.to_number(found[0]), found[1]
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

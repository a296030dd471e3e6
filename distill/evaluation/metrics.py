"""Answer-level metrics: accuracy, pass@k (unbiased), PassRatio@k, maj@k.

Definitions (NOTES.md, Xwin-Math): with n samples of a question of which c are correct,
pass@k = 1 - C(n-c, k) / C(n, k) (the unbiased estimator of "any of k samples is right"),
PassRatio@n = c / n (the share of samples that are right; `scoring` reports it as the sampled
accuracy), and maj@k = whether the most common answer among the first k samples is right (LaTeX
answers that are equal count as one answer). Each is averaged over questions.
"""
from __future__ import annotations

from collections.abc import Sequence
from math import comb

from solvers.answers import to_number

Number = int | float


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn without replacement from n (c right) is right."""
    if not 0 < k <= n or not 0 <= c <= n:
        raise ValueError(f"need 0 < k <= n and 0 <= c <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def ks_for(n: int) -> list[int]:
    """The k reported for n samples: powers of two below n, and n itself."""
    ks, k = [], 1
    while k < n:
        ks.append(k)
        k *= 2
    return ks + [n]


def answer_key(value: object) -> Number | str | None:
    """Answers that count as the same vote: integers exactly, other numbers to 6 significant
    digits; a LaTeX answer (a string that is not a number) is its own key."""
    number = to_number(value)
    if number is None:
        return value.strip() or None if isinstance(value, str) else None
    if isinstance(number, int):
        return number
    return f"{number:.6g}"


def same_vote(a: Number | str, b: Number | str) -> bool:
    """Keys of one vote: equal, or LaTeX answers the checker finds equal without a symbolic
    comparison (`\\frac{1}{2}` and `0.5`, `3,-3` and `-3,3`); numbers never look further."""
    if a == b:
        return True
    if not (isinstance(a, str) and not _is_number_key(a)) and not (isinstance(b, str) and not _is_number_key(b)):
        return False
    from solvers.mathans import quick_equal

    return quick_equal(str(a), str(b)) is True


def _is_number_key(key: str) -> bool:
    return to_number(key) is not None


def majority(answers: Sequence[object]) -> int | None:
    """Index of the first answer of the most common value (None answers abstain; ties go to the
    value seen first, so callers order `answers` by priority); None if all abstain."""
    counts: dict[object, int] = {}
    first: dict[object, int] = {}
    latex = False  # a LaTeX answer was seen: new answers are compared with the earlier ones
    for i, answer in enumerate(answers):
        key = answer_key(answer)
        if key is None:
            continue
        latex = latex or (isinstance(key, str) and not _is_number_key(key))
        if latex and key not in counts:  # numbers alone stay plain dictionary keys, as they always were
            key = next((k for k in counts if same_vote(k, key)), key)  # type: ignore[arg-type]
        counts[key] = counts.get(key, 0) + 1
        first.setdefault(key, i)
    if not counts:
        return None
    best = max(counts.values())
    return min(first[key] for key, n in counts.items() if n == best)


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None

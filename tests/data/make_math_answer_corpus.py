"""Write tests/data/math_answer_corpus.jsonl: pairs of answers with a known verdict.

From the 5,000 gold answers of MATH test (the last `\\boxed{}` of each solution) it writes rewritings
that keep the value (`equal: true`: another fraction command, a decimal for a fraction, a radical
folded, terms of a sum reordered, a set permuted, `x \\in` before an interval, units, thousands
separators, a model's sentence around the answer) and near misses that do not (`equal: false`: a
digit changed, a sign flipped, an interval end opened, an element dropped, a tuple swapped). The
rewrites are plain string operations chosen per answer shape, deterministic for a seed; they do
not use the checker. MATH500's `answer` field against the boxed answer of its `solution` is added
as source `math500`.

    python tests/data/make_math_answer_corpus.py [--data ../shared/data] [-o tests/data/math_answer_corpus.jsonl]
"""
from __future__ import annotations

import argparse
import json
import random
import re
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

from solvers.mathans.extract import extract_boxed

INT = re.compile(r"-?\d+")
FRAC = re.compile(r"(-?)\\[dt]?frac\{(\d+)\}\{(\d+)\}")
RADICAL = re.compile(r"(\d+)\\sqrt\{(\d+)\}")
Rewrite = Callable[[str, random.Random], str | None]


def _top_split(s: str, sep: str = ",") -> list[str]:
    out, depth, start = [], 0, 0
    for i, c in enumerate(s):
        depth += c in "([{"
        depth -= c in ")]}"
        if c == sep and depth == 0:
            out.append(s[start:i])
            start = i + 1
    return out + [s[start:]]


def _decimal(q: Fraction) -> str | None:
    """The terminating decimal of q, or None."""
    d = q.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    if d != 1:
        return None
    digits = 0
    while (q * 10**digits).denominator != 1:
        digits += 1
    return f"{float(q):.{digits}f}" if digits else str(q.numerator)


def _value(gold: str) -> Fraction | None:
    if INT.fullmatch(gold):
        return Fraction(int(gold))
    if re.fullmatch(r"-?\d*\.\d+", gold):
        return Fraction(gold)
    m = FRAC.fullmatch(gold)
    if m and int(m.group(3)):
        return Fraction(int(m.group(2)), int(m.group(3))) * (-1 if m.group(1) else 1)
    return None


# ---- rewrites that keep the value -------------------------------------------------------------
def eq_frac_command(g: str, r: random.Random) -> str | None:
    if "\\frac" not in g:
        return None
    return g.replace("\\frac", r.choice(["\\dfrac", "\\tfrac"]))


def eq_number_form(g: str, r: random.Random) -> str | None:
    q = _value(g)
    if q is None:
        return None
    if q.denominator == 1:
        n = q.numerator
        forms = [f"{n}.0", f"\\${n}" if n > 0 else None, f"{n}^\\circ", f"{n} \\text{{ units}}"]
        if abs(n) >= 1000:
            forms.append(f"{n:,}")
        return r.choice([f for f in forms if f])
    dec = _decimal(q)
    if dec is not None and "." in g:
        return f"\\frac{{{q.numerator}}}{{{q.denominator}}}"
    if dec is not None:
        return dec
    if q.denominator in (3, 9, 11, 33, 99) and 0 < q < 1:  # a purely repeating decimal
        period = 1 if q.denominator in (3, 9) else 2
        digits = str(q.numerator * (10**period - 1) // q.denominator).zfill(period)
        return f"0.\\overline{{{digits}}}"
    return f"{q.numerator}/{q.denominator}" if q > 0 else f"-{-q.numerator}/{q.denominator}"


def eq_fold_radical(g: str, r: random.Random) -> str | None:
    m = RADICAL.search(g)
    if not m:
        return None
    k, n = int(m.group(1)), int(m.group(2))
    return g[:m.start()] + f"\\sqrt{{{k * k * n}}}" + g[m.end():]


def eq_commute_sum(g: str, r: random.Random) -> str | None:
    g = g.rstrip(". ")
    if any(x in g for x in (",", "=", "<", ">", "\\le", "\\ge", "\\begin", "\\cup", "\\pm", "\\mp")):
        return None
    terms = re.findall(r"[+-]?[^+-]+", g.replace(" ", ""))
    if len(terms) < 2 or _top_split(g.replace(" ", ""), "+") == [g.replace(" ", "")] and "-" not in g[1:]:
        return None
    # only where every + and - is at the top level (no brackets around them)
    depth_ok = all(c not in "+-" or d == 0 for c, d in _depths(g.replace(" ", "")))
    if not depth_ok or any(t[-1] in "^_{(" or t.endswith(("\\cdot", "\\times")) for t in terms if t):
        return None
    terms = [t if t[0] in "+-" else "+" + t for t in terms]
    terms = terms[1:] + terms[:1]
    out = "".join(terms)
    return out[1:] if out.startswith("+") else out


def _depths(s: str) -> list[tuple[str, int]]:
    out, depth = [], 0
    for c in s:
        if c in ")]}":
            depth -= 1
        out.append((c, depth))
        if c in "([{":
            depth += 1
    return out


def eq_permute_set(g: str, r: random.Random) -> str | None:
    if re.search(r"\d,\s*(?:\\!)?\s*\d{3}|\\text|\\,", g):  # thousands separators, units
        return None
    inner, wrap = g, ("", "")
    if g.startswith("\\{") and g.endswith("\\}"):
        inner, wrap = g[2:-2], ("\\{", "\\}")
    elif g[:1] in "([" or "\\begin" in g:
        return None
    items = [x.strip() for x in _top_split(inner)]
    if len(items) < 2 or len(set(items)) < 2:
        return None
    return wrap[0] + ", ".join(items[::-1]) + wrap[1]


def eq_left_right(g: str, r: random.Random) -> str | None:
    if not (g.startswith("(") and g.endswith(")")) or "," not in g:
        return None
    return "\\left( " + ", ".join(x.strip() for x in _top_split(g[1:-1])) + " \\right)"


def eq_interval_member(g: str, r: random.Random) -> str | None:
    if re.fullmatch(r"[\[(].*,.*[\])]", g) and ("\\infty" in g or "\\cup" in g or g[0] != g[-1].translate(str.maketrans(")]", "(["))):
        return f"x \\in {g}"
    return None


def eq_matrix(g: str, r: random.Random) -> str | None:
    return g.replace("pmatrix", "bmatrix") if "pmatrix" in g else None


def eq_pi(g: str, r: random.Random) -> str | None:
    m = re.fullmatch(r"\\frac\{(\d*)\\pi\}\{(\d+)\}", g)
    if not m:
        return None
    return f"\\frac{{{m.group(1) or 1}}}{{{m.group(2)}}}\\pi"


def eq_text(g: str, r: random.Random) -> str | None:
    m = re.fullmatch(r"\\text(?:bf)?\{\s*\(?([A-Za-z][A-Za-z ]*?)\)?\s*\}", g)
    return m.group(1) if m else None


def eq_degrees(g: str, r: random.Random) -> str | None:
    return re.sub(r"\^\s*\{?\\circ\}?", "", g) if "\\circ" in g else None


def eq_equation(g: str, r: random.Random) -> str | None:
    if "x" in g and not any(c in g for c in "=<>,") and not re.search(r"\\begin|\\text|y", g):
        return f"y = {g}"
    return None


EQUIVALENT: list[Rewrite] = [
    eq_frac_command, eq_number_form, eq_fold_radical, eq_commute_sum, eq_permute_set, eq_left_right,
    eq_interval_member, eq_matrix, eq_pi, eq_text, eq_degrees, eq_equation,
]


# ---- near misses ------------------------------------------------------------------------------
def nm_digit(g: str, r: random.Random) -> str | None:
    spots = [m.start() for m in re.finditer(r"\d", g)]
    if not spots:
        return None
    i = r.choice(spots)
    return g[:i] + str((int(g[i]) + r.choice([1, 2, 7])) % 10) + g[i + 1:]


def nm_number(g: str, r: random.Random) -> str | None:
    q = _value(g)
    if q is None:
        return None
    wrong = r.choice([q + 1, q * 10 if q else Fraction(1), -q if q else Fraction(-1), 1 / q if q not in (0, 1, -1) else q + 2])
    return str(wrong.numerator) if wrong.denominator == 1 else f"\\frac{{{wrong.numerator}}}{{{wrong.denominator}}}"


def nm_sign(g: str, r: random.Random) -> str | None:
    flips = [i for i, (c, d) in enumerate(_depths(g)) if c in "+-" and i > 0 and d == 0 and g[i - 1] not in "^_{("]
    if not flips or "," in g or "\\pm" in g:
        return None
    i = r.choice(flips)
    return g[:i] + ("-" if g[i] == "+" else "+") + g[i + 1:]


def nm_interval(g: str, r: random.Random) -> str | None:
    if not re.fullmatch(r"[\[(].*,.*[\])]", g) or "\\cup" in g:
        return None
    if g[0] == "(" and g[-1] == ")" and "\\infty" not in g:
        return None  # an ordered pair as much as an interval
    if g[0] == "[" and "\\infty" not in g[1:4]:
        return "(" + g[1:]
    return g[:-1] + ("]" if g[-1] == ")" else ")") if "\\infty" not in g[-8:] else None


def nm_drop(g: str, r: random.Random) -> str | None:
    inner, wrap = g, ("", "")
    if g[:1] in "([" and g[-1:] in ")]":
        inner, wrap = g[1:-1], (g[0], g[-1])
    elif g.startswith("\\{"):
        inner, wrap = g[2:-2], ("\\{", "\\}")
    items = _top_split(inner)
    if len(items) < 3 and not (len(items) == 2 and wrap[0] != "("):
        return None
    return wrap[0] + ",".join(items[:-1]) + wrap[1]


def nm_swap(g: str, r: random.Random) -> str | None:
    if not (g.startswith("(") and g.endswith(")")):
        return None
    items = _top_split(g[1:-1])
    if len(items) < 2 or items[0].strip() == items[1].strip():
        return None
    return "(" + ",".join([items[1], items[0], *items[2:]]) + ")"


def nm_choice(g: str, r: random.Random) -> str | None:
    m = re.fullmatch(r"\\text(?:bf)?\{\s*\(([A-E])\)\s*\}|\(?([A-E])\)?", g)
    if not m:
        return None
    letter = m.group(1) or m.group(2)
    return r.choice([c for c in "ABCDE" if c != letter])


def nm_pi(g: str, r: random.Random) -> str | None:
    """pi dropped where a factor (`2\\pi` -> `2`), replaced by 2 where alone (`\\frac{\\pi}{3}`)."""
    if "\\pi" not in g:
        return None
    return re.sub(r"(?<=[\d}])\\pi|\\pi", lambda m: "" if m.start() and g[m.start() - 1] in "0123456789}" else "2", g, count=1)


def nm_sqrt(g: str, r: random.Random) -> str | None:
    m = re.search(r"\\sqrt\{(\d+)\}", g)
    if not m:
        return None
    n = int(m.group(1)) + 1
    while int(n**0.5) ** 2 == n:
        n += 1
    return g[:m.start()] + f"\\sqrt{{{n}}}" + g[m.end():]


NEAR_MISS: list[Rewrite] = [nm_digit, nm_number, nm_sign, nm_interval, nm_drop, nm_swap, nm_choice, nm_pi, nm_sqrt]

# How a model writes an answer it means (checked through extract_final).
SENTENCES = [
    "So the final answer is $\\boxed{{{a}}}$.", "Therefore, the answer is ${a}$.", "The answer is {a}",
    "Putting it together we get $$\\boxed{{{a}}}$$", "Hence the result is \\({a}\\).",
]


def _rows_for(i: int, gold: str, r: random.Random) -> list[dict]:
    rows = []
    for label, rewrites, k in ((True, EQUIVALENT, 2), (False, NEAR_MISS, 2)):
        made = [(f.__name__, out) for f in rewrites if (out := f(gold, r)) is not None and out.strip() != gold.strip()]
        for name, out in r.sample(made, min(k, len(made))):
            rows.append({"gold": gold, "pred": out, "equal": label, "kind": name})
    rows.append({"gold": gold, "pred": r.choice(SENTENCES).format(a=gold), "equal": True, "kind": "solution", "solution": True})
    return rows


def build(data: Path, seed: int = 0) -> list[dict]:
    out = []
    for lineno, line in enumerate(open(data / "math" / "test.jsonl", encoding="utf-8"), 1):
        item = json.loads(line)
        gold = extract_boxed(item["solution"])
        if not gold:
            continue
        r = random.Random(f"{seed}:{item['unique_id']}")
        for k, row in enumerate(_rows_for(lineno, gold, r)):
            out.append({"id": f"{item['unique_id']}#{k}", "source": "math:test", **row})
    for line in open(data / "math" / "math500.jsonl", encoding="utf-8"):
        item = json.loads(line)
        out.append({"id": item["unique_id"], "source": "math500", "gold": extract_boxed(item["solution"]),
                    "pred": item["answer"], "equal": True, "kind": "math500-answer"})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data", type=Path)
    ap.add_argument("-o", "--output", default=Path(__file__).with_name("math_answer_corpus.jsonl"), type=Path)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rows = build(args.data, args.seed)
    with open(args.output, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{len(rows)} pairs -> {args.output}")


if __name__ == "__main__":
    main()

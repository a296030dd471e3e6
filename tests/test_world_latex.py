"""The world's LaTeX families (fractions, radicals, ordered pairs) through the real checkers: gold
rationales accepted, injected errors rejected (on a few thousand teacher samples), EoT refused with
a clear class where the answer is a tuple, and eval scoring them against their LaTeX golds."""
from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest
from distill.checking import Checker
from distill.records import InputError, Record
from distill.teachers.extract import extract_rationale
from distill.world import LATEX_FAMILIES, generate_problems, load_world
from distill.world.errors import KINDS
from distill.world.latex_problem import LatexProblem, forms
from distill.world.teacher import WorldTeacher
from solvers.mathans import equivalent

THOUGHTS = ("cot", "pot", "eot")


@pytest.fixture(scope="module")
def problems() -> list[LatexProblem]:
    found = generate_problems("train", 40 * len(LATEX_FAMILIES), families=list(LATEX_FAMILIES))
    assert all(isinstance(p, LatexProblem) for p in found)
    return found  # type: ignore[return-value]


def _checked(rows: list[tuple[LatexProblem, str, str]]) -> list[Record]:
    """(problem, thought, raw teacher text) through the checkers every stage uses."""
    records = [Record(id=f"{i}", question=p.question, answer=p.answer, thought=t, rationale=extract_rationale(t, raw))
               for i, (p, t, raw) in enumerate(rows)]
    for thought in THOUGHTS:
        with Checker(thought, timeout=10) as checker:
            checker.fill([r for r in records if r.thought == thought])
    return records


def test_golds_are_latex_strings_of_each_kind(problems: list[LatexProblem]) -> None:
    assert Counter(p.family for p in problems) == {f: 40 for f in LATEX_FAMILIES}
    golds = [p.answer for p in problems]
    assert all(isinstance(g, str) for g in golds)
    assert any(g.startswith("\\frac") for g in golds) and any("\\sqrt" in g for g in golds)
    assert any(g.startswith("(") and "\\frac" in g for g in golds)  # a pair with a fractional coordinate
    assert any(g.startswith("(-") or ", -" in g for g in golds)
    rec = problems[0].to_record()
    assert rec.answer == problems[0].answer and rec.meta["family"] in LATEX_FAMILIES
    # the default world keeps its whole-number families; a spec names these and weights them
    assert not {r.meta["family"] for r in load_world("world:train?n=40").records} & set(LATEX_FAMILIES)
    mixed = [r.meta["family"] for r in load_world("world:test?n=12&families=rates*3+marbles").records]
    assert mixed == ["rates", "marbles", "rates", "rates"] * 3
    for bad in ("rates*0", "rates*x", "marbles*2+nope"):
        with pytest.raises(InputError):
            load_world(f"world:train?n=3&families={bad}")


def test_every_writing_of_an_answer_equals_the_gold(problems: list[LatexProblem]) -> None:
    """The teacher's boxed forms (`\\dfrac`, `a/b`, unreduced, `\\sqrt{20}`, decimals) are equal
    to the gold by our checker; the decimal appears only where the question allows it."""
    seen: Counter[str] = Counter()
    for p in problems:
        for form in forms(p.value, p.answer, p.exact):
            assert equivalent(form, p.answer), (form, p.answer)
            seen["decimal" if "." in form else "dfrac" if "dfrac" in form else "slash" if "/" in form else "other"] += 1
            assert not (p.exact and "." in form)
    assert all(seen[k] for k in ("decimal", "dfrac", "slash")), seen


def test_gold_rationales_are_accepted_and_eot_refuses_tuples(problems: list[LatexProblem]) -> None:
    rows = [(p, t, p.render(t, v)) for p in problems for t in THOUGHTS for v in ((0, 77, 200) if t == "cot" else (0,))]
    records = _checked(rows)
    for (p, t, _), r in zip(rows, records):
        if p.applies(t):
            assert r.correct is True, (p.family, t, r.rationale, r.prediction, r.status)
        else:  # EoT cannot write an ordered pair as one value: a clear failure class, never a verdict of equal
            assert p.family == "crossing" and t == "eot" and (r.correct, r.status) == (False, "unsupported")
    pot = [r for r, (p, t, _) in zip(records, rows) if t == "pot"]
    assert {type(r.prediction) for r in pot} >= {str}  # the exact SymPy answer, printed as LaTeX
    assert any(r.rationale.startswith("from sympy import") and "Rational" in r.rationale for r in pot)


SAMPLES = {"cot": 10, "pot": 2, "eot": 8}  # PoT programs import sympy in the sandbox: the slow ones


def test_injected_errors_are_rejected_on_thousands_of_rationales(problems: list[LatexProblem]) -> None:
    teacher = WorldTeacher(error_rate=1.0, seed=5)
    rows, kinds = [], []
    for p in problems:
        for t in THOUGHTS:
            for s in range(SAMPLES[t]):
                raw, kind = teacher.write(p.question, t, s)
                rows.append((p, t, raw))
                kinds.append(kind)
    records = _checked(rows)
    applicable = [(k, r) for k, r, (p, t, _) in zip(kinds, records, rows) if p.applies(t)]
    assert len(applicable) >= 2000 and all(k is not None for k, _ in applicable)
    assert {(r.thought, k) for k, r in applicable} == {(t, k) for t in THOUGHTS for k in KINDS[t]}  # every kind
    accepted = Counter((r.thought, k) for k, r in applicable if r.correct is not False)
    print(f"\nLaTeX families: injected errors rejected {1 - sum(accepted.values()) / len(applicable):.2%} "
          f"of {len(applicable)}")
    assert not accepted, accepted
    clean = [(p, t, raw) for p in problems for t in THOUGHTS for s in range(SAMPLES[t] // 2)
             for raw, _ in [WorldTeacher(error_rate=0.0, seed=5).write(p.question, t, s)] if p.applies(t)]
    assert all(r.correct is True for r in _checked(clean))


def test_eval_scores_latex_golds_and_falls_back(tmp_path: Path) -> None:
    """Predictions on the LaTeX families through eval's own checker: equal forms are right, an
    injected wrong answer is wrong, and where PoT fails and EoT cannot state a pair, the fallback
    moves on to CoT."""
    from distill.evaluation import score_predictions

    rows = []
    for p in generate_problems("test", 6, families=["marbles", "diagonal", "crossing"]):
        assert isinstance(p, LatexProblem)
        texts = {"pot": p.render("pot"), "eot": p.render("eot"), "cot": p.render("cot", 5)}
        if p.family == "marbles":
            texts["cot"] = p.inject("cot", "final", random.Random(1))[0]
        if p.family == "crossing":
            texts["pot"] = p.inject("pot", "syntax", random.Random(1))[0]
        rows += [Record(id=p.id, question=p.question, answer=p.answer, source="world:test", thought=t,
                        rationale=x).to_dict() for t, x in texts.items()]
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = score_predictions([preds], tmp_path / "eval", fallback="pot,eot,cot", vote=True)
    accuracy = report["datasets"]["world:test"]["accuracy"]
    assert accuracy["pot"] == accuracy["eot"] == accuracy["cot"] == pytest.approx(4 / 6)
    assert accuracy["fallback"] == 1.0
    assert "world:test" in (tmp_path / "eval" / "report.md").read_text()

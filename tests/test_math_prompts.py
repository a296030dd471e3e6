"""MATH few-shot exemplars (prompts/math_cot.yaml, prompts/math_pot.yaml): one per subject, each
verified by our own checker. PoT programs run in the sandbox, whose exact answers (a checked srepr,
never a pickled object) are compared with the LaTeX answers."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from distill.math_data import SUBJECTS
from solvers.mathans import Checker, extract_boxed

PROMPTS = Path(__file__).resolve().parents[1] / "prompts"


def _load(name: str) -> dict:
    return yaml.safe_load((PROMPTS / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def checker():
    with Checker() as c:
        yield c


@pytest.mark.parametrize("name", ["math_cot.yaml", "math_pot.yaml"])
def test_every_subject_has_an_exemplar(name):
    prompt = _load(name)
    assert set(SUBJECTS) <= {e["subject"] for e in prompt["exemplars"]}
    assert "{question}" in prompt["cue"] and prompt["thought"] in ("cot", "pot")


def test_cot_exemplars_box_their_answer(checker):
    for ex in _load("math_cot.yaml")["exemplars"]:
        boxed = extract_boxed(ex["rationale"])
        assert boxed is not None and ex["rationale"].rstrip().endswith(("}$.", "}$")), ex["question"]
        v = checker.check(boxed, str(ex["answer"]))
        assert v.equal, (ex["question"], boxed, ex["answer"], v.detail)


def test_pot_exemplars_compute_their_answer_in_the_sandbox():
    """Each program runs in the sandbox; its exact SymPy `ans` comes back as a checked srepr and is
    compared with the LaTeX answer (solvers.grading), as generate and eval do."""
    from distill.checking import Checker as ThoughtChecker
    from distill.records import Record

    exemplars = _load("math_pot.yaml")["exemplars"]
    records = [Record(id=str(i), question=ex["question"], answer=str(ex["answer"]), rationale=ex["rationale"])
               for i, ex in enumerate(exemplars)]
    with ThoughtChecker("pot", timeout=20, workers=1) as pot:
        pot.fill(records)
    for r in records:
        assert r.correct, (r.question, r.prediction, r.status)


def test_a_wrong_exemplar_would_fail(checker):
    """The check can fail: a CoT answer box changed by one digit is caught."""
    ex = _load("math_cot.yaml")["exemplars"][1]
    assert not checker.check(extract_boxed(ex["rationale"]).replace("9", "8"), str(ex["answer"])).equal

"""MATH few-shot exemplars (prompts/math_cot.yaml, prompts/math_pot.yaml): one per subject, each
verified by our own checker. PoT programs run with plain `exec` in a child process for now (our own
trusted exemplars; the sandbox that returns exact values is being rewritten elsewhere); `ans` comes
back as LaTeX (sympy.latex), never as a pickled object."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from distill.math_data import SUBJECTS
from solvers.mathans import Checker, extract_boxed

PROMPTS = Path(__file__).resolve().parents[1] / "prompts"
_RUN = """
import json, sys
import sympy
scope = {}
exec(sys.stdin.read(), scope)
ans = scope["ans"]
if isinstance(ans, (set, frozenset)):
    text = ", ".join(sympy.latex(sympy.sympify(a)) for a in sorted(ans, key=str))
elif isinstance(ans, tuple):
    text = "(" + ", ".join(sympy.latex(sympy.sympify(a)) for a in ans) + ")"
elif isinstance(ans, str):
    text = ans
else:
    text = sympy.latex(ans)
print(json.dumps(text))
"""


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


def test_pot_exemplars_compute_their_answer(checker):
    for ex in _load("math_pot.yaml")["exemplars"]:
        out = subprocess.run([sys.executable, "-c", _RUN], input=ex["rationale"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        ans = json.loads(out.stdout.strip().splitlines()[-1])
        v = checker.check(ans, str(ex["answer"]))
        assert v.equal, (ex["question"], ans, ex["answer"], v.detail)


def test_a_wrong_exemplar_would_fail(checker):
    """The check can fail: a CoT answer box changed by one digit is caught."""
    ex = _load("math_cot.yaml")["exemplars"][1]
    assert not checker.check(extract_boxed(ex["rationale"]).replace("9", "8"), str(ex["answer"])).equal

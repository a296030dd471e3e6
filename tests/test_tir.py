"""Tool-integrated reasoning: trace parsing, cells run as a notebook in the sandbox, validation."""
from __future__ import annotations

import pytest

from distill.checking import Checker
from distill.records import Record
from distill.resources import prompt_file
from distill.teachers.extract import extract_rationale
from distill.teachers.prompts import load_prompt
from solvers.executor import Executor
from solvers.outcome import Status
from solvers.tir import STOP, Turn, append_output, check_trace, open_cells, output_matches, parse, render


@pytest.fixture(scope="module")
def executor():
    with Executor(workers=1, timeout=5) as ex:
        yield ex


def test_exemplars_replay_and_grade():
    prompt = load_prompt(prompt_file("tir.yaml"))
    records = [Record(id=str(i), question=e.question, answer=e.answer, thought="tir", rationale=e.rationale)
               for i, e in enumerate(prompt.exemplars)]
    assert len(records) >= 4 and any(isinstance(r.answer, str) for r in records)
    with Checker("tir") as checker:
        checker.fill(records)
    assert [(r.status, r.correct) for r in records] == [("ok", True)] * len(records)


def test_fabricated_output_is_rejected_real_one_kept():
    trace = "We add.\n```python\nx = 17 * 23\nprint(x)\n```\n```output\n391\n```\nSo \\boxed{391}."
    with Checker("tir") as checker:
        good, bad = checker.check([trace, trace.replace("391\n```", "392\n```")])
    assert good.status is Status.OK and good.prediction == 391
    assert bad.status is Status.OUTPUT_MISMATCH and "cell 1" in bad.detail


def test_cells_share_state_errors_and_display(executor):
    (cells,) = executor.run_cells([["a = 6\nprint(a * 7)", "b = a + 1\nb", "print(undefined)", "print(b)"]])
    assert cells.status is Status.OK
    assert cells.outputs == (("42\n", None), ("", "7"), ("NameError: name 'undefined' is not defined", None),
                             ("7\n", None))


def test_cells_forbidden_and_timeout_end_the_trace(executor):
    forbidden, looping = executor.run_cells([["x = 1", "open('/etc/passwd').read()"], ["while True:\n    pass"]])
    assert forbidden.status is Status.FORBIDDEN
    assert looping.status is Status.TIMEOUT


def test_parse_render_roundtrip_and_open_cells():
    trace = "Think.\n```python\nprint(1)\n```\n```output\n1\n```\nMore.\n```python\nprint(2)\n```\n```output\n2\n```\nDone \\boxed{2}"
    turns = parse(trace)
    assert [t.code for t in turns] == ["print(1)\n", "print(2)\n", None]
    assert turns[0].output == "1" and turns[-1] == Turn("Done \\boxed{2}")
    assert parse(render(turns)) == turns
    stopped = "Think.\n```python\nx = 2\n```\n```output\n\n```\nNow:\n```python\nprint(x + 1)\n```\n"
    assert open_cells(stopped) == ["x = 2\n", "print(x + 1)\n"]
    assert open_cells(stopped + STOP) == open_cells(stopped)
    assert open_cells("no code here") is None
    resumed = append_output(stopped + STOP, "3\n")
    assert resumed.endswith("```output\n3\n```\n") and open_cells(resumed) is None


@pytest.mark.parametrize("recorded, cell, same", [
    ("12", ("12\n", None), True),
    ("{h: 23, c: 7}", ("{c: 7, h: 23}\n", None), True),  # hash order
    ("0.333333333333333", ("0.3333333333333333\n", None), True),
    ("[np.float64(1.5), 2]", ("[1.5, 2]\n", None), True),
    ("NameError: name 'y' is not defined", ("Traceback...\nNameError: name 'y' is not defined", None), True),
    ("1\n2\n...\n99\n100", ("\n".join(map(str, range(1, 101))) + "\n", None), True),
    ("13", ("12\n", None), False),
    ("12 13", ("12 12\n", None), False),
    ("", ("5\n", None), False),
])
def test_output_matches(recorded, cell, same):
    assert output_matches(recorded, cell) is same


def test_extractor_keeps_cells_and_cuts_after_the_answer():
    raw = "Go.\n```python\nprint(3)\n```\n```output\n3\n```\nThe answer is \\boxed{3}.\nQuestion: next one"
    assert extract_rationale("tir", raw) == "Go.\n```python\nprint(3)\n```\n```output\n3\n```\nThe answer is \\boxed{3}."


def test_sandbox_failure_is_the_verdict():
    from solvers.outcome import Cells

    assert check_trace("x", Cells((), Status.TIMEOUT, "killed")).status is Status.TIMEOUT

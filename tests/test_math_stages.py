"""MATH through every stage: data set specs, grading against LaTeX golds (CoT, PoT with exact SymPy
answers, EoT), validate, generate with the MATH prompts, eval by level and subject with votes on
LaTeX answers, mix's decontamination, synth's agreement."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from teacher_server import TeacherServer  # noqa: E402

from distill.checking import Checker  # noqa: E402
from distill.cli import main  # noqa: E402
from distill.data import DATASETS, load, prompt_set  # noqa: E402
from distill.decontam import DEFAULT_EVAL_SETS, default_eval_sets  # noqa: E402
from distill.evaluation import score_predictions  # noqa: E402
from distill.evaluation.metrics import majority  # noqa: E402
from distill.generate import Settings, generate  # noqa: E402
from distill.records import Record  # noqa: E402
from distill.synth import Tally  # noqa: E402
from distill.teachers.extract import extract_rationale  # noqa: E402
from distill.teachers.prompts import load_prompt  # noqa: E402
from distill.resources import resource  # noqa: E402
from solvers.grading import cot_outcome, grade, grade_many  # noqa: E402
from solvers.mathans.exact import exact_latex  # noqa: E402
from solvers.outcome import Outcome, Status  # noqa: E402


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ---------------------------------------------------------------- data
def test_math_sets_are_registered_with_filters_meta_and_prompts(shared_data: Path) -> None:
    assert {"math", "math500"} <= set(DATASETS.names())
    test = load("math:test", data_root=shared_data)
    assert len(test.records) == 5000 and all(isinstance(r.answer, str) for r in test.records)
    hard = load("math:test?level=5&type=Geometry", data_root=shared_data).records
    assert hard and all(r.meta["level"] == 5 and r.meta["subject"] == "Geometry" for r in hard)
    assert len(load("HuggingFaceH4/MATH-500", data_root=shared_data).records) == 500
    assert len(load("math500?level=1", data_root=shared_data).records) < 500
    assert len(load("EleutherAI/hendrycks_math:train", data_root=shared_data).records) > 7000
    assert prompt_set("math:train?level=5") == {"cot": "math_cot.yaml", "pot": "math_pot.yaml",
                                                 "synth": "math_synth.yaml"} == prompt_set("math500")
    assert prompt_set("gsm8k:train") == {}


# ---------------------------------------------------------------- grading
def test_numeric_golds_keep_todays_rule() -> None:
    o = cot_outcome("3 + 4 = 7. The answer is 7.")
    assert grade(o, 7) .__dict__ == {"prediction": 7, "status": "ok", "correct": True}
    assert grade(cot_outcome("The answer is 33.4%."), 0.334).correct  # the percent reading, as before
    assert grade(cot_outcome("I cannot tell."), 3).status == "no-answer"


def test_latex_golds_are_compared_mathematically() -> None:
    cases = [
        (r"So the probability is $\boxed{\dfrac{4}{36}}$.", r"\frac{1}{9}", True),
        (r"The point is $\boxed{\left( 3, \frac{\pi}{2} \right)}$.", r"(3,\frac{\pi}{2})", True),
        (r"The answer is $x \in [-2, 7)$.", "[-2,7)", True),
        (r"Thus $\boxed{\sqrt{20}}$.", r"2\sqrt{5}", True),
        (r"Thus $\boxed{2\sqrt{6}}$.", r"2\sqrt{5}", False),
        (r"The solutions are $\boxed{3, -3}$", "-3,3", True),
        ("I give up.", r"\frac{1}{9}", False),
    ]
    graded = grade_many([cot_outcome(t) for t, _, _ in cases], [g for _, g, _ in cases])
    assert [g.correct for g in graded] == [c for *_, c in cases]
    assert graded[0].prediction == r"\frac{1}{9}" and graded[-1].status == "no-answer"
    assert grade(cot_outcome(r"$\boxed{12}$"), r"12").prediction == 12  # an integer answer stays a number


def test_exact_sympy_answers_become_latex_without_eval() -> None:
    assert exact_latex("Rational(1, 3)") == r"\frac{1}{3}"
    assert exact_latex("Pow(Integer(10), Integer(1000000000))") == "10^{1000000000}"  # not computed
    assert exact_latex("__import__('os').system('true')") is None
    matrix = Outcome(None, Status.NON_NUMERIC, "", "ImmutableDenseMatrix([[Integer(1)], [Integer(2)]])")
    assert grade(matrix, r"\begin{pmatrix}1\\2\end{pmatrix}").correct
    assert grade(Outcome(None, Status.UNSUPPORTED, "no equation"), r"\frac{1}{2}").__dict__ == {
        "prediction": None, "status": "unsupported", "correct": False}  # EoT: its failure class stays


def test_pot_programs_with_sympy_answers_are_checked_in_the_sandbox() -> None:
    programs = [
        ("from sympy import Rational\nans = Rational(4, 36)", r"\frac{1}{9}", True),
        ("from sympy import sqrt\nans = sqrt(20)", r"2\sqrt{5}", True),
        ("from sympy import Matrix\nans = Matrix([1, 2])", r"\begin{pmatrix}1\\2\end{pmatrix}", True),
        ("from sympy import Interval\nans = Interval.Ropen(-2, 7)", "[-2,7)", True),
        ("ans = 0.5", r"\frac{1}{2}", True),
        ("from sympy import pi\nans = pi / 3", r"\frac{\pi}{2}", False),
        ("ans = 1 / 0", r"\frac{1}{2}", False),
    ]
    records = [Record(id=str(i), question="q", answer=gold, thought="pot", rationale=code)
               for i, (code, gold, _) in enumerate(programs)]
    with Checker("pot", timeout=10, workers=1) as checker:
        checker.fill(records)
    assert [r.correct for r in records] == [c for *_, c in programs], [(r.prediction, r.status) for r in records]
    assert records[-1].status == "runtime"


def test_cot_rationale_is_not_cut_before_its_boxed_answer() -> None:
    raw = ("The answer is $x$ when $x^2 = 4$, so we need both roots.\nThey are $2$ and $-2$.\n"
           "Hence $\\boxed{2, -2}$.\nQuestion: next")
    rationale = extract_rationale("cot", raw)
    assert rationale.endswith("\\boxed{2, -2}$.") and grade(cot_outcome(rationale), "-2,2").correct
    assert extract_rationale("cot", "2 + 2 = 4. The answer is 4.\nMore talk.") == "2 + 2 = 4. The answer is 4."


# ---------------------------------------------------------------- validate
def test_validate_math_gold_solutions_against_their_own_answers(tmp_path: Path, shared_data: Path) -> None:
    records = load("math:test", data_root=shared_data).records
    rows = [{"question": r.question, "rationale": r.meta["solution"], "answer": r.answer} for r in records]
    # a near miss for every tenth: the boxed answer of another problem, which must be wrong
    wrong = [{**rows[i], "answer": rows[i + 1]["answer"]} for i in range(0, len(rows) - 1, 10)
             if rows[i]["answer"] != rows[i + 1]["answer"]]
    src = _jsonl(tmp_path / "gold.jsonl", rows + wrong)
    out = tmp_path / "out.jsonl"
    res = CliRunner().invoke(main, ["validate", "--thoughts", "cot", str(src), "-o", str(out)])
    assert res.exit_code == 0, res.output
    checked = [json.loads(line) for line in out.read_text().splitlines()]
    gold_part, wrong_part = checked[:len(rows)], checked[len(rows):]
    assert sum(r["correct"] is True for r in gold_part) / len(rows) >= 0.995
    assert sum(r["correct"] is False for r in wrong_part) / len(wrong) >= 0.97
    # numeric golds (`13.5`) keep the numeric statuses (`non-numeric` for `\\text{Monday}`)
    assert all(r["status"] in ("ok", "no-answer", "unparsable", "timeout", "non-numeric") for r in checked)


def test_validate_reads_string_golds_as_unknown_in_numeric_files(tmp_path: Path) -> None:
    rows = [{"question": "q", "rationale": "The answer is 5.", "answer": "2:3"}]
    out = tmp_path / "out.jsonl"
    for flag, correct in ((), None), (("--answers", "latex"), False):
        res = CliRunner().invoke(main, ["validate", "--thoughts", "cot", str(_jsonl(tmp_path / "in.jsonl", rows)),
                                        "-o", str(out), "--overwrite", *flag])
        assert res.exit_code == 0, res.output
        assert json.loads(out.read_text())["correct"] is correct


# ---------------------------------------------------------------- generate
def test_generate_on_math_asks_with_the_math_prompt(tmp_path: Path, shared_data: Path) -> None:
    spec = "math:test?level=1&type=Algebra"
    items = load(spec, data_root=shared_data).records[:3]
    script = {r.question.strip(): {"cot": [f"Work.\nSo the answer is $\\boxed{{{r.answer}}}$.", "No idea."]}
              for r in items}
    data = _jsonl(tmp_path / "math.jsonl", [{"unique_id": r.id, "problem": r.question, "level": "Level 1",
                                             "type": "Algebra", "solution": r.meta["solution"]} for r in items])
    out = tmp_path / "out.jsonl"
    with TeacherServer(script) as server:
        generate(str(data), "cot", "openai:t", out, teacher_options={"base_url": server.url},
                 settings=Settings(samples=2), concurrency=2, workers=1)
        # a plain file keeps the thought's own prompt; the registered MATH set names its own
        assert prompt_set(str(data)) == {}
    rows = [Record.from_dict(json.loads(line)) for line in out.read_text().splitlines()]
    assert sorted(r.correct for r in rows) == [False] * 3 + [True] * 3
    assert all(r.meta["level"] == 1 and r.meta["subject"] == "Algebra" for r in rows)
    math_prompt = load_prompt(resource("prompts", "math_cot.yaml"))
    assert "boxed" in math_prompt.system
    with TeacherServer(script) as server:
        out2 = tmp_path / "out2.jsonl"
        generate(spec, "cot", "openai:t", out2, limit=3, teacher_options={"base_url": server.url},
                 settings=Settings(samples=1), concurrency=2, workers=1)
    assert {json.loads(line)["prompt_hash"] for line in out2.read_text().splitlines()} == {math_prompt.hash}


# ---------------------------------------------------------------- eval
def test_majority_groups_equal_latex_answers() -> None:
    assert majority([r"\frac{1}{2}", "7", "0.5", "7", r"\frac{2}{4}"]) == 0
    assert majority(["3,-3", "-3,3", "x"]) == 0
    assert majority(["7", r"\frac{1}{2}", 0.5, "7", 0.5]) == 1  # a PoT float joins the equal LaTeX answer
    assert majority([5, 5.0, 6]) == 0 and majority([None, 2, 3, 3]) == 2  # numbers as before


def test_eval_reports_accuracy_by_level_and_subject_with_votes(tmp_path: Path) -> None:
    rows = []
    for i, (level, subject) in enumerate([(1, "Algebra"), (1, "Geometry"), (5, "Algebra")]):
        for thought, text in (("cot", r"So $\boxed{\frac{1}{2}}$." if i != 2 else r"$\boxed{3}$"),
                              ("pot", "from sympy import Rational\nans = Rational(1, 2)")):
            for sample in range(2):
                rows.append(Record(id=f"m/{i}", question=f"q{i}", answer=r"\dfrac12", source="math:test", thought=thought,
                                   rationale=text, sample=sample, meta={"level": level, "subject": subject}).to_dict())
    preds = _jsonl(tmp_path / "preds.jsonl", rows)
    report = score_predictions([preds], tmp_path / "eval", vote=True)
    s = report["datasets"]["math:test"]
    assert s["accuracy"]["pot"] == 1.0 and s["accuracy"]["cot"] == pytest.approx(2 / 3)
    assert s["by"]["level"]["1"]["accuracy"]["cot"] == 1.0 and s["by"]["level"]["5"]["accuracy"]["cot"] == 0.0
    assert s["by"]["subject"]["Geometry"]["scored"] == 1
    assert s["maj@k"]["cot"]["2"] == pytest.approx(2 / 3) and s["pass@k"]["pot"]["1"] == 1.0
    md = (tmp_path / "eval" / "report.md").read_text()
    assert "accuracy by level" in md and "accuracy by subject" in md


# ---------------------------------------------------------------- mix and synth
def test_mix_of_math_data_decontaminates_against_math_test(tmp_path: Path, shared_data: Path) -> None:
    assert default_eval_sets(["gsm8k:train"]) == DEFAULT_EVAL_SETS
    assert default_eval_sets(["synth:math:train"])[-2:] == ("math500", "math:test")
    test = load("math500", data_root=shared_data).records[:2]
    train = load("math:train", data_root=shared_data).records[:3]
    rows = [Record(id=r.id, question=r.question, answer=r.answer, source=r.source, thought="cot",
                   rationale=f"Hence $\\boxed{{{r.answer}}}$.", correct=True).to_dict() for r in test + train]
    src = _jsonl(tmp_path / "gen.jsonl", rows)
    out = tmp_path / "mtd"
    res = CliRunner().invoke(main, ["mix", str(src), "-o", str(out), "--data-dir", str(shared_data)])
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "mix.json").read_text())
    assert {"math:test", "math500"} <= set(meta["decontamination"]["eval_sets"])
    assert len(meta["decontamination"]["flagged"]) == 2
    kept = [json.loads(line) for split in ("train", "validation") for line in (out / f"{split}.jsonl").read_text().splitlines()]
    assert sorted(r["question_id"] for r in kept) == sorted(r.id for r in train)
    assert all(isinstance(r["answer"], str) for r in kept)


def test_synth_votes_group_equal_latex_answers() -> None:
    tally = Tally({"pot": [r"\frac{1}{2}", "0.5"], "cot": [r"\dfrac{2}{4}", r"\sqrt{2}"]})
    answer, share = tally.decide(4, 0.75)
    assert share == 0.75 and answer == r"\frac{1}{2}"
    assert Tally({"pot": [3, 3.0000000001, 4]}).answers() == [(3, 2), (4, 1)]


def test_math_decontamination_keeps_numbers(shared_data: Path) -> None:
    """A MATH test problem copied is flagged; the same template with other numbers is another problem
    (with numbers as `#`, a fifth of MATH train would go); GSM8K-style rewrites are still caught."""
    from distill.decontam import EvalIndex

    index = EvalIndex.load(default_eval_sets(["math:train"]), data_root=shared_data)
    problem = r"Evaluate $i^5+i^{-25}+i^{45}$."
    assert problem in {r.question for r in load("math:test", data_root=shared_data).records}
    assert index.match(problem) is not None and index.match(r"Evaluate $i^6+i^{16}+i^{-26}$.") is None
    gsm = load("gsm8k:test", data_root=shared_data).records[0].question
    assert index.match(gsm.replace("16", "17")) is not None

"""The registries and the stage functions: a toy thought plugged in from Python runs through
validate, mix and eval; the import graph keeps the core free of the world and of cycles; a recipe
with a 2-process train stage runs to the end and a rerun skips every stage."""
from __future__ import annotations

import ast
import json
import os
import re
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from distill.cli import main
from distill.records import InputError, Record, read_records, write_jsonl
from distill.thoughts import THOUGHTS, PerRationale, Thought, parse_thoughts, register_thought
from solvers.answers import parse_number
from solvers.outcome import Outcome, Status

ROOT = Path(__file__).resolve().parents[1]

TOY_PROMPT = """\
thought: toy
system: "Answer with one line `ANSWER: N`."
cue: "Question: {question}\\nAnswer directly.\\n"
exemplars:
  - {question: "What is 2 + 3?", rationale: "ANSWER: 5", answer: 5}
"""


def _toy_check(text: str) -> Outcome:
    m = re.search(r"ANSWER:\s*(\S+)", text)
    value = parse_number(m.group(1)) if m else None
    return Outcome.ok(value) if value is not None else Outcome.fail(Status.NO_ANSWER)


@pytest.fixture
def toy(tmp_path: Path):
    prompt = tmp_path / "toy.yaml"
    prompt.write_text(TOY_PROMPT)
    thought = register_thought(Thought(
        "toy", lambda raw: raw.strip().splitlines()[0] if raw.strip() else "",
        lambda timeout, workers: PerRationale(_toy_check), "Question: {question}\nAnswer directly.\n", prompt,
        (Status.NO_ANSWER.value,), "answers in one line"))
    yield thought
    THOUGHTS.unregister("toy")


def test_unknown_thought_is_one_error_listing_the_known_ones() -> None:
    with pytest.raises(InputError, match=r"unknown thought 'pox' \(known: cot, pot, eot"):
        parse_thoughts("pot,pox")
    assert parse_thoughts(["pot,eot", "pot", "cot"]) == ["pot", "eot", "cot"]


def test_generate_with_an_unknown_thought_names_the_thought(tmp_path: Path) -> None:
    from distill.generate import generate

    with pytest.raises(InputError, match="unknown thought 'pox'"):
        generate("world:train?n=2", "pox", "world:", tmp_path / "out.jsonl")


def test_a_toy_thought_runs_through_validate_mix_and_eval(toy: Thought, tmp_path: Path) -> None:
    from distill.teachers.extract import extract_rationale
    from distill.teachers.prompts import load_prompts

    assert load_prompts(["toy"])["toy"].exemplars[0].rationale == "ANSWER: 5"
    assert extract_rationale("toy", "ANSWER: 7\nQuestion: next one") == "ANSWER: 7"
    rows = [{"question": f"What is {i} + 1?", "rationale": f"ANSWER: {i + 1 + (i % 3 == 0)}", "answer": i + 1}
            for i in range(12)]
    src = tmp_path / "toy.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = CliRunner().invoke(main, ["validate", "--thoughts", "toy", str(src), "-o", str(tmp_path / "checked.jsonl")])
    assert res.exit_code == 0, res.output
    checked = [json.loads(line) for line in (tmp_path / "checked.jsonl").read_text().splitlines()]
    assert [r["correct"] for r in checked] == [i % 3 != 0 for i in range(12)]

    generated = [Record(id=f"toy/{i}", question=r["question"], answer=r["answer"], source="toy", thought="toy",
                        rationale=r["rationale"], prediction=c["prediction"], status=c["status"], correct=c["correct"],
                        model="scripted") for i, (r, c) in enumerate(zip(rows, checked))]
    write_jsonl(tmp_path / "gen.jsonl", generated)
    res = CliRunner().invoke(main, ["mix", str(tmp_path / "gen.jsonl"), "-o", str(tmp_path / "mtd"),
                                    "--decontaminate", "none", "--val-fraction", "0"])
    assert res.exit_code == 0, res.output
    train_rows = [json.loads(line) for line in (tmp_path / "mtd" / "train.jsonl").read_text().splitlines()]
    assert len(train_rows) == 8 and {r["thought"] for r in train_rows} == {"toy"}
    assert train_rows[0]["input"].endswith("\nAnswer directly.\n")  # the thought's own default cue

    unchecked = [Record(**{**vars(r), "prediction": None, "status": None, "correct": None}) for r in generated]
    write_jsonl(tmp_path / "pred.jsonl", unchecked)
    res = CliRunner().invoke(main, ["eval", "--predictions", str(tmp_path / "pred.jsonl"), "-o", str(tmp_path / "ev")])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert "toy" in json.dumps(report) and "66.7" in (tmp_path / "ev" / "report.md").read_text()


def test_a_data_set_and_a_teacher_register_from_python(tmp_path: Path) -> None:
    import asyncio

    from distill.data import DATASETS, DataSet, load, register_dataset
    from distill.teachers import TEACHERS, Completion, TeacherBackend, make_teacher, register_teacher

    register_dataset("tiny", lambda spec, root: DataSet(spec, [Record(id="tiny/0", question="1+1?", answer=2)]))

    class Echo:
        name = "echo"

        async def complete(self, request):  # noqa: ANN001, ANN201
            return [Completion("The answer is 2.", "stop", 1, 1)] * request.n

        async def aclose(self) -> None:
            pass

    register_teacher(TeacherBackend("echo", lambda model: Echo()))
    try:
        assert load("tiny:any").records[0].answer == 2
        assert make_teacher("echo:x").name == "echo"
        from distill.generate import generate

        result = generate("tiny", "cot", "echo:x", tmp_path / "out.jsonl")
        assert result.stats.written == 1 and read_records(tmp_path / "out.jsonl")[0].correct is True
        asyncio.run(make_teacher("echo:x").aclose())
    finally:
        DATASETS.unregister("tiny")
        TEACHERS.unregister("echo")


def _imports(path: Path, modules: set[str] = frozenset()) -> set[str]:
    """The modules `path` imports (`from pkg import sub` imports `pkg.sub` where that is a module)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out |= _imports_of(node, modules)
    return out


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_import_graph() -> None:
    files = sorted(ROOT.glob("distill/**/*.py")) + sorted(ROOT.glob("solvers/**/*.py"))
    modules = {_module(p): p for p in files}
    graph = {m: {i for i in _imports(p, set(modules)) if i in modules and i != m} for m, p in modules.items()}
    for m, deps in graph.items():
        if not m.startswith("distill.world"):
            assert not [d for d in deps if d.startswith("distill.world")], f"{m} imports the world"
        if m.startswith("solvers"):
            assert not [d for d in deps if d.startswith("distill")], f"{m} imports distill"
        if m.startswith("distill.commands."):
            private = [d for d in _imports(modules[m]) if d.startswith("distill.commands.")
                       and d.rsplit(".", 1)[-1].startswith("_")]
            assert not private, f"{m} imports a command's private helper: {private}"
    # No cycle, except through an import made inside a function (a deliberate late import).
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for d in graph[m]:
            if state.get(d) == 1:
                cycle = stack[stack.index(d):] + [d] if d in stack else [m, d]
                if not any(_lazy(modules[a], b) for a, b in zip(cycle, cycle[1:])):
                    raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
            elif d not in state:
                visit(d, stack + [d])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])


def _lazy(path: Path, target: str) -> bool:
    """Whether `path` imports `target` only inside a function (a deliberate late import)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)) and target in _imports_of(node, {target}):
            return False
    return True


def _imports_of(node: ast.Import | ast.ImportFrom, modules: set[str] = frozenset()) -> set[str]:
    if isinstance(node, ast.Import):
        return {a.name for a in node.names}
    if not node.module or node.level:
        return set()
    subs = {f"{node.module}.{a.name}" for a in node.names}
    return {s for s in subs if s in modules} or {node.module} | subs


def test_recipe_values_are_checked_against_the_typed_options(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: t\nrun_dir: {tmp_path}/run\nstages:\n  - name: train\n    command: train\n"
                      "    options: {student: tiny-t5, data: x, output: y, max-steps: many}\n")
    res = CliRunner().invoke(main, ["run", str(recipe), "--dry-run"])
    assert res.exit_code == 2 and "option 'max-steps': expected int, got 'many'" in res.output


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="torch.distributed with gloo needed")
def test_recipe_with_a_two_process_train_stage_runs_to_the_end(tmp_path: Path) -> None:
    import subprocess

    from datasets import Dataset, DatasetDict
    from test_train import CUES, _rows

    data = tmp_path / "mtd"
    DatasetDict(train=Dataset.from_list(_rows(32, 0)), validation=Dataset.from_list(_rows(4, 1))).save_to_disk(data)
    (data / "mix.json").write_text(json.dumps({"cues": CUES}))
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"question": "2+2?", "rationale": "The answer is 4.", "answer": 4}) + "\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""\
name: two-proc
run_dir: {tmp_path}/run
stages:
  - name: train
    command: train
    options:
      student: tiny-t5
      data: {data}
      output: "{{run_dir}}/student"
      max-steps: 4
      batch-size: 8
      save-every: 0
      set: ["tiny.d_model=32", "tiny.layers=1", "tiny.heads=2", "trackers=none"]
      accelerate-config: {ROOT / "recipes/accelerate/cpu-2proc.yaml"}
  - name: after
    command: validate
    args: [{src}]
    options: {{thoughts: cot, output: "{{run_dir}}/after.jsonl"}}
""")
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    env.pop("OMP_NUM_THREADS", None)

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "distill", "run", str(recipe)], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)

    first = run()
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert (tmp_path / "run" / "student" / "model.safetensors").is_file()
    assert json.loads((tmp_path / "run" / "after.jsonl").read_text())["correct"] is True
    stages = json.loads((tmp_path / "run" / "stages.json").read_text())
    assert [(s["stage"], s["status"]) for s in stages] == [("train", "done"), ("after", "done")]
    second = run()
    log = second.stdout + second.stderr
    assert second.returncode == 0 and log.count("finished earlier") == 2, log[-2000:]


@pytest.mark.parametrize("name", ["validate", "generate", "synth", "mix", "train", "eval"])
def test_command_flags_and_stage_options_agree(name: str) -> None:
    """Every flag of a command is a field of its stage's options (so a recipe can say it), and
    every field is a flag (so the shell can)."""
    import click

    from distill.stages import get_stage

    stage = get_stage(name)
    command = main.get_command(click.Context(main), name)
    params = {p.name for p in command.params}
    fields = set(stage.field_names())
    assert params == fields, (sorted(params - fields), sorted(fields - params))

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from distill.cli import main

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))


def _recipe(tmp_path: Path, stages: str) -> Path:
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"question": "2+2?", "rationale": "The answer is 4.", "answer": 4}) + "\n")
    path = tmp_path / "r.yaml"
    path.write_text(f"name: t\nrun_dir: {tmp_path}/run\nstages:\n{stages.replace('IN', str(src))}")
    return path


TWO_STAGES = """\
  - name: first
    command: validate
    args: [IN]
    options: {thought: cot, output: "{run_dir}/a.jsonl"}
  - name: second
    command: validate
    args: ["{run_dir}/a.jsonl"]
    options: {thought: cot, output: "{run_dir}/b.jsonl"}
"""


def test_run_then_rerun_skips_finished_stages(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path, TWO_STAGES)
    res = CliRunner().invoke(main, ["run", str(recipe)])
    assert res.exit_code == 0, res.output
    out = tmp_path / "run" / "b.jsonl"
    assert json.loads(out.read_text())["correct"] is True
    res = CliRunner().invoke(main, ["run", str(recipe)])  # would fail on the existing outputs if rerun
    assert res.exit_code == 0 and res.output.count("finished earlier") == 2


def test_dry_run_runs_nothing(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["run", str(_recipe(tmp_path, TWO_STAGES)), "--dry-run"])
    assert res.exit_code == 0 and "is valid" in res.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "stages, message",
    [
        (TWO_STAGES.replace("thought: cot, output: \"{run_dir}/b", "thougt: cot, output: \"{run_dir}/b"),
         "unknown option 'thougt'"),
        (TWO_STAGES.replace("command: validate\n    args: [IN]", "command: nope\n    args: [IN]"),
         "unknown command 'nope'"),
        (TWO_STAGES.replace('["{run_dir}/a.jsonl"]', '["{run_dir}/missing.jsonl"]'), "does not exist"),
        (TWO_STAGES.replace("    options: {thought: cot, output: \"{run_dir}/a.jsonl\"}\n", "    colour: red\n", 1),
         "unknown key 'colour'"),
    ],
)
def test_bad_recipes_are_caught_before_running(tmp_path: Path, stages: str, message: str) -> None:
    res = CliRunner().invoke(main, ["run", str(_recipe(tmp_path, stages)), "--dry-run"])
    assert res.exit_code == 2 and message in res.output, res.output


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.name for p in RECIPES])
def test_shipped_recipes_pass_dry_run(recipe: Path) -> None:
    res = CliRunner().invoke(main, ["run", str(recipe), "--dry-run"])
    assert res.exit_code == 0, res.output


def test_smoke_overrides_apply_as_options(tmp_path: Path) -> None:
    from distill.recipe import load_recipe

    recipe = _recipe(tmp_path, TWO_STAGES)
    text = recipe.read_text()
    recipe.write_text(text.replace("stages:\n", "smoke:\n  stages:\n    second: {thought: pot}\n    first: {options: {thought: eot}}\nstages:\n", 1))
    plain, smoke = load_recipe(recipe), load_recipe(recipe, smoke=True)
    assert [s.options["thought"] for s in plain.stages] == ["cot", "cot"]
    assert [s.options["thought"] for s in smoke.stages] == ["eot", "pot"]
    recipe.write_text(text.replace("stages:\n", "smoke:\n  stages:\n    third: {thought: pot}\nstages:\n", 1))
    res = CliRunner().invoke(main, ["run", str(recipe), "--smoke", "--dry-run"])
    assert res.exit_code == 2 and "unknown stage 'third'" in res.output

"""`distill train` on 2 CPU processes (torchrun + gloo): the multi-process path CI can run without GPUs.

One 12-step run of a tiny T5 (ByT5 bytes) on 2 processes, checkpoint at step 6; then a copy of it,
cut back to the step-6 checkpoint as if killed after step 11, resumed on 2 processes.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from distill.students import load_student
from test_train import CUES, _rows

ROOT = Path(__file__).resolve().parents[1]
STEPS, SAVE_EVERY = 12, 6

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="torch.distributed with gloo needed")

RECIPE = f"""\
student: tiny-t5
tiny: {{d_model: 32, layers: 1, heads: 2}}
lr: 3.0e-3
warmup_ratio: 0.0
batch_size: 8
max_steps: {STEPS}
log_every: 1
save_every: {SAVE_EVERY}
trackers: none
"""


def _distill(*args: str) -> str:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    env.pop("OMP_NUM_THREADS", None)
    result = subprocess.run([sys.executable, "-m", "distill", "train", *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def _rows_of(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from datasets import Dataset, DatasetDict

    base = tmp_path_factory.mktemp("ddp")
    data = base / "mtd"
    DatasetDict(train=Dataset.from_list(_rows(64, 0)), validation=Dataset.from_list(_rows(8, 1))).save_to_disk(data)
    (data / "mix.json").write_text(json.dumps({"cues": CUES}))
    (base / "recipe.yaml").write_text(RECIPE)
    out = base / "run"
    _distill("--accelerate-config", str(ROOT / "recipes/accelerate/cpu-2proc.yaml"), "--recipe", str(base / "recipe.yaml"),
             "--data", str(data), "-o", str(out))
    return out


@pytest.mark.slow
def test_two_processes_share_the_data_and_learn(run: Path) -> None:
    rows = _rows_of(run)
    train_rows = [r for r in rows if "loss" in r]
    # One metrics writer: every step logged once (two writers would log each step twice).
    assert [r["step"] for r in train_rows] == list(range(1, STEPS + 1))
    assert [r["step"] for r in rows if "eval_loss" in r] == [SAVE_EVERY, STEPS]
    # 64 examples in batches of 8 = 8 micro-batches an epoch, 4 per process: an epoch every 4 steps
    # (a process training alone would take 8).
    assert {r["step"]: r["epoch"] for r in train_rows}[4] == 1.0
    losses = [r["loss"] for r in train_rows]
    assert losses[-1] < 0.8 * losses[0], losses
    assert (run / "loss.png").is_file()


@pytest.mark.slow
def test_checkpoints_written_once_by_rank_0(run: Path) -> None:
    from safetensors.torch import load_file

    checkpoints = run / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == [f"step-{STEPS}", f"step-{SAVE_EVERY}"]  # no .tmp left
    for step in (SAVE_EVERY, STEPS):
        directory = checkpoints / f"step-{step}"
        names = {p.name for p in directory.iterdir()}
        assert {"model.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json", "train_config.yaml",
                "distill_student.json", "config.json"} <= names
        assert sorted(n for n in names if n.startswith("rng_state")) == ["rng_state_0.pt", "rng_state_1.pt"]
        assert not [n for n in names if n.endswith((".tmp", ".lock")) or "~" in n]
        torch.load(directory / "optimizer.pt", weights_only=False)  # complete, not interleaved writes
        assert json.loads((directory / "trainer_state.json").read_text())["step"] == step
    # Data position after step 6: epoch 1 (4 steps an epoch per process), its 3rd micro-batch.
    state = json.loads((checkpoints / f"step-{SAVE_EVERY}" / "trainer_state.json").read_text())
    assert (state["epoch"], state["batch"]) == (1, 2)
    final = load_file(run / "model.safetensors")
    last = load_file(checkpoints / f"step-{STEPS}" / "model.safetensors")
    assert final.keys() == last.keys() and all(torch.equal(final[k], last[k]) for k in final)
    model, tokenizer, settings = load_student(str(run))
    assert settings.kind == "seq2seq" and settings.cues == CUES


@pytest.mark.slow
def test_resume_on_two_processes_matches_uninterrupted(run: Path, tmp_path: Path) -> None:
    # As if killed after step 11: the step-12 checkpoint and the final student never written,
    # metrics rows past the step-6 checkpoint left behind (resume drops them).
    crashed = tmp_path / "crashed"
    shutil.copytree(run, crashed, ignore=shutil.ignore_patterns(f"step-{STEPS}"))
    for name in ("model.safetensors", "loss.png"):
        (crashed / name).unlink()
    rows = [r for r in _rows_of(run) if r["step"] < STEPS]
    (crashed / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    log = _distill("--num-processes", "2", "-o", str(crashed), "--resume")
    assert f"resuming at step {SAVE_EVERY}" in log
    full, resumed = _rows_of(run), _rows_of(crashed)
    assert [r["step"] for r in resumed] == [r["step"] for r in full]  # each step once, eval rows included
    for a, b in zip(full, resumed):
        for key in ("loss", "eval_loss", "epoch", "tokens"):
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-5), (a["step"], key)
    assert (crashed / "checkpoints" / f"step-{STEPS}" / "rng_state_1.pt").is_file()
    assert (crashed / "model.safetensors").is_file()

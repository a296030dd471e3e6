"""`distill eval --gpus N`: questions sharded over N processes (here on the CPU), one merged evaluation
equal to a single process's, resumable by shard or by a single-device run."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from distill.cli import main
from test_eval import tiny_student  # noqa: F401 - the fixture

pytestmark = pytest.mark.slow

QUESTIONS = [{"id": str(i), "question": f"Tom has {i + 2} apples and buys {i % 4 + 1} more. How many apples?",
              "answer": i + 2 + i % 4 + 1} for i in range(9)]


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _key(row: dict) -> tuple:
    return row["source"], row["id"], row.get("thought") or "", row["sample"]


def test_two_processes_give_the_evaluation_of_one(tmp_path: Path, tiny_student: Path) -> None:  # noqa: F811
    a, b = _write(tmp_path / "a.jsonl", QUESTIONS[:7]), _write(tmp_path / "b.jsonl", QUESTIONS[7:])
    common = ["eval", "--model", str(tiny_student), "--data", f"{a},{b}", "--thoughts", "cot,eot", "--max-new-tokens",
              "6", "--vote", "--workers", "1"]
    one, two = tmp_path / "one", tmp_path / "two"
    res = CliRunner().invoke(main, [*common, "-o", str(one)])
    assert res.exit_code == 0, res.output
    sharded = [*common, "-o", str(two), "--gpus", "2", "--device", "cpu"]
    res = CliRunner().invoke(main, sharded)
    assert res.exit_code == 0, res.output
    # Each process decoded every other question of each set, into its own shard directory.
    shards = [_lines(two / "shards" / str(i) / "predictions.jsonl") for i in (0, 1)]
    assert [len({(r["source"], r["id"]) for r in s}) for s in shards] == [4 + 1, 3 + 1]
    assert not {(r["source"], r["id"]) for r in shards[0]} & {(r["source"], r["id"]) for r in shards[1]}
    assert [json.loads((two / "shards" / str(i) / "config.json").read_text())["shard"] for i in (0, 1)] == ["0/2", "1/2"]
    # One merged evaluation, as a single process writes it.
    assert json.loads((two / "config.json").read_text()) == json.loads((one / "config.json").read_text())
    assert json.loads((two / "report.json").read_text()) == json.loads((one / "report.json").read_text())
    merged, alone = _lines(two / "predictions.jsonl"), _lines(one / "predictions.jsonl")
    assert len(merged) == 18 and sorted(merged, key=_key) == sorted(alone, key=_key)
    assert sorted(_lines(two / "items.jsonl"), key=_key) == sorted(_lines(one / "items.jsonl"), key=_key)
    # Rerun: every shard resumes complete (nothing decoded again); a single-device run resumes from the merge.
    res = CliRunner().invoke(main, sharded)
    assert res.exit_code == 0, res.output
    assert [len(_lines(two / "shards" / str(i) / "predictions.jsonl")) for i in (0, 1)] == [len(s) for s in shards]
    res = CliRunner().invoke(main, [*common, "-o", str(two)])
    assert res.exit_code == 0, res.output
    assert len(_lines(two / "predictions.jsonl")) == 18


def test_gpus_need_as_many_devices(tmp_path: Path, tiny_student: Path) -> None:  # noqa: F811
    import torch

    data = _write(tmp_path / "a.jsonl", QUESTIONS[:2])
    args = ["eval", "--model", str(tiny_student), "--data", str(data), "-o", str(tmp_path / "ev")]
    have = torch.cuda.device_count() if torch.cuda.is_available() else 0
    many = max(2, have + 1)
    res = CliRunner().invoke(main, [*args, "--gpus", str(many)])
    assert res.exit_code == 2 and f"--gpus {many}: {have} CUDA device(s)" in res.output
    res = CliRunner().invoke(main, [*args, "--gpus", "2", "--device", "cuda:1"])
    assert res.exit_code == 2 and "would put them all on one" in res.output
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    res = CliRunner().invoke(main, [*args[:-1], str(tmp_path / "other"), "--gpus", "2", "--device", "cpu"])
    assert res.exit_code == 2 and "not an evaluation directory" in res.output
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"

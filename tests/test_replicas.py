"""`hf:MODEL` with `--gpus N`: one replica per device, requests shared out (here N replicas on the CPU)."""
from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from test_generate import workload, write_data  # noqa: E402
from test_teachers import save_tiny_llama  # noqa: E402

from distill.cli import main  # noqa: E402
from distill.teachers import Request, TeacherError, make_teacher  # noqa: E402


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-llama")
    save_tiny_llama(path, layers=1)
    return path


def test_requests_are_shared_out_over_the_replicas(tiny_llama: Path) -> None:
    one = make_teacher(f"hf:{tiny_llama}", device="cpu", batch_size=2)
    two = make_teacher(f"hf:{tiny_llama}", device="cpu", batch_size=2, gpus=2)
    assert len(one.replicas) == 1 and len(two.replicas) == 2 and two.name == one.name == f"hf:{tiny_llama}"
    assert two.replicas[0].model is not two.replicas[1].model  # a copy of the weights each

    async def go(teacher):
        requests = [Request([{"role": "user", "content": f"Question: q{i}?\n"}], n=1, max_tokens=5, temperature=0.0)
                    for i in range(8)]
        try:
            return await asyncio.gather(*(teacher.complete(r) for r in requests))
        finally:
            await teacher.aclose()

    alone, shared = asyncio.run(go(one)), asyncio.run(go(two))
    assert two.served == [4, 4] and two.in_flight == [0, 0]
    assert [[c.text for c in row] for row in shared] == [[c.text for c in row] for row in alone]  # greedy: same answers


def test_gpus_need_as_many_devices(tiny_llama: Path) -> None:
    import torch

    have = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(TeacherError, match=f"--gpus {have + 1}: {have} CUDA device"):
        make_teacher(f"hf:{tiny_llama}", gpus=have + 1)
    with pytest.raises(TeacherError, match="would put them all on one"):
        make_teacher(f"hf:{tiny_llama}", gpus=2, device="cuda:1")
    with pytest.raises(TeacherError, match="not an option of openai"):
        make_teacher("openai:m", base_url="http://x/v1", gpus=2)


def test_cli_generate_with_two_replicas(tmp_path: Path, tiny_llama: Path) -> None:
    """The flags reach the backend: two CPU replicas answer every request (the random model's 5-token
    answers are truncated, so the run ends as one whose every answer failed, but each was asked once)."""
    from distill.journal import journal_path

    items, _ = workload(4)
    data = write_data(tmp_path / "data.jsonl", items)
    out = tmp_path / "out.jsonl"
    res = CliRunner().invoke(main, ["generate", "--thought", "cot", "--data", str(data), "--teacher", f"hf:{tiny_llama}",
                                    "--gpus", "2", "--device", "cpu", "--max-tokens", "5", "--temperature", "0",
                                    "-o", str(out), "--no-progress", "--workers", "1"])
    # Every answer truncated: the run reports a teacher failure (a clean exit, not a crash).
    assert res.exception is None or isinstance(res.exception, SystemExit), res.output
    answers = [json.loads(line) for line in journal_path(out).read_text().splitlines()]
    answers = [a for a in answers if "completions" in a]
    assert len(answers) == 4 and len({a["key"] for a in answers}) == 4
    assert all(c["completion_tokens"] == 5 and c["text"] for a in answers for c in a["completions"])

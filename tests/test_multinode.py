"""The multi-GPU benchmark's worker on 2 CPU processes (gloo): two "nodes" on one host (two `torchrun
--nnodes 2` launches of one process each, meeting on 127.0.0.1) train the DDP case's tiny T5 exactly as
one launch of two processes does, and so does `distill train` itself; the FSDP2 case's sharded
checkpoint resumes to the same losses."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "train_multigpu.py"
WORKER = ["--worker", "ddp", "--cpu-smoke", "--steps", "4", "--warmup", "1", "--examples", "64", "--tokens", "512",
          "--threads", "1"]
TIMEOUT = 240

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                 reason="torch.distributed with gloo needed")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env() -> dict[str, str]:
    out = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    out.pop("OMP_NUM_THREADS", None)
    return out


def torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *args, str(BENCH)]


def wait_all(procs: list[subprocess.Popen]) -> None:
    try:
        for p in procs:
            out, err = p.communicate(timeout=TIMEOUT)
            assert p.returncode == 0, (out + err)[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_two_nodes_on_one_host_match_one_launch_of_two_processes(tmp_path: Path) -> None:
    single = tmp_path / "single.json"
    one = subprocess.Popen(torchrun("--standalone", "--nproc-per-node=2") + WORKER + ["--result", str(single)],
                           cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_all([one])
    port = free_port()
    nodes = tmp_path / "nodes.json"
    launches = [
        subprocess.Popen(torchrun("--nnodes=2", f"--node-rank={rank}", "--nproc-per-node=1", "--master-addr=127.0.0.1",
                                  f"--master-port={port}") + WORKER + ["--result", str(nodes)],
                         cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for rank in (0, 1)]
    wait_all(launches)
    a, b = json.loads(single.read_text()), json.loads(nodes.read_text())
    assert a["world"] == b["world"] == 2
    assert len(a["losses"]) == 5 and all(0 < x < 20 for x in a["losses"])  # 1 warm-up + 4 timed steps
    assert b["losses"] == pytest.approx(a["losses"], rel=1e-6, abs=1e-6)
    assert b["tokens_per_step"] == a["tokens_per_step"]  # each process saw the same share of the data


def test_fsdp2_sharded_checkpoint_resumes_to_the_same_losses(tmp_path: Path) -> None:
    result = tmp_path / "fsdp.json"
    run = subprocess.Popen(torchrun("--standalone", "--nproc-per-node=2")
                           + ["--worker", "fsdp", "--cpu-smoke", "--steps", "2", "--warmup", "1", "--resume-steps", "3",
                              "--examples", "64", "--tokens", "512", "--threads", "1", "--lr", "1e-2", "--pack", "yes", "--result", str(result),
                              "--checkpoint-dir", str(tmp_path)],
                           cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_all([run])
    outcome = json.loads(result.read_text())
    assert outcome["world"] == 2 and len(outcome["losses"]) == 6
    # A large learning rate, so that steps from anything but the saved weights and optimizer state would
    # show (with lr 1e-2 a fresh model's losses differ by more than 1e-2); on CPU the resume is exact.
    assert outcome["resume_diff"] is not None and outcome["resume_diff"] <= 1e-6
    # A torch.distributed.checkpoint directory, one shard file per process (removed after the check).
    assert outcome["checkpoint"] == [".metadata", "__0_0.distcp", "__1_0.distcp"] and outcome["checkpoint_gb"] > 0
    assert not (tmp_path / "fsdp").exists()


TRAIN_RECIPE = """\
student: tiny-t5
tiny: {d_model: 32, layers: 1, heads: 2}
lr: 3.0e-3
warmup_ratio: 0.0
batch_size: 8
max_steps: 4
log_every: 1
trackers: none
threads: 1
"""


def test_distill_train_on_two_nodes_matches_num_processes_2(tmp_path: Path) -> None:
    """The documented multi-node recipe, `accelerate launch --num_machines 2 --machine_rank R --main_process_ip
    ... -m distill train`, against `distill train --num-processes 2` on one host (gloo on the CPU). (torchrun
    --nnodes is the launcher under both; its rendezvous is tested through the benchmark above.)"""
    from datasets import Dataset, DatasetDict

    from test_train import CUES, _rows

    data = tmp_path / "mtd"
    DatasetDict(train=Dataset.from_list(_rows(64, 0))).save_to_disk(data)
    (data / "mix.json").write_text(json.dumps({"cues": CUES}))
    (tmp_path / "recipe.yaml").write_text(TRAIN_RECIPE)
    train = ["-m", "distill", "train", "--recipe", str(tmp_path / "recipe.yaml"), "--data", str(data)]

    def start(*cmd: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, *cmd], cwd=ROOT, env=env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def losses(out: Path) -> list[float]:
        return [r["loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "loss" in r]

    wait_all([start(*train, "--num-processes", "2", "-o", str(tmp_path / "one"))])
    expected = losses(tmp_path / "one")
    assert len(expected) == 4
    port = free_port()
    wait_all([start("-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "2", "--machine_rank", str(rank),
                    "--main_process_ip", "127.0.0.1", "--main_process_port", str(port), "--num_processes", "2",
                    *train, "-o", str(tmp_path / "accelerate"))
              for rank in (0, 1)])
    assert losses(tmp_path / "accelerate") == pytest.approx(expected, rel=1e-4)
    assert (tmp_path / "accelerate" / "model.safetensors").is_file()

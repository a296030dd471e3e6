"""Checkpoints that resume exactly: weights, optimizer, scheduler, every RNG, and the data position.

`checkpoints/step-N/` holds the model in `save_pretrained` form (the adapter only, for LoRA), the
tokenizer, `train_config.yaml`, `distill_student.json`, and the training state. A checkpoint is
written to `step-N.tmp/` and renamed when complete, so a kill -9 never leaves a half-written one.
Under FSDP/DeepSpeed (sharded optimizer state) accelerate's own `save_state` holds model and optimizer.
"""
from __future__ import annotations

import json
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distill.students import StudentSettings
from distill.train.config import TrainConfig

STATE_FILE = "trainer_state.json"
CONFIG_FILE = "train_config.yaml"


@dataclass
class TrainState:
    step: int = 0  # optimizer steps done
    epoch: int = 0  # position of the next micro-batch: epoch ...
    batch: int = 0  # ... and index in this process's micro-batches of that epoch
    tokens: int = 0  # real (non-pad) tokens trained on, this process
    packed: bool | None = None  # whether the micro-batches were packed rows: the plan, and so `batch`, depends on it


def checkpoint_dir(output_dir: str | Path, step: int) -> Path:
    return Path(output_dir) / "checkpoints" / f"step-{step}"


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    done = [p for p in (Path(output_dir) / "checkpoints").glob("step-*")
            if p.name.removeprefix("step-").isdigit() and (p / STATE_FILE).is_file()]
    return max(done, key=lambda p: int(p.name.removeprefix("step-")), default=None)


def sharded(accelerator: Any) -> bool:
    return accelerator.distributed_type.name in ("FSDP", "DEEPSPEED")


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_model(accelerator: Any, model: Any, tokenizer: Any, directory: Path) -> None:
    """`save_pretrained` form (adapter only for a peft model), written by the main process."""
    state_dict = accelerator.get_state_dict(model)  # collective under FSDP/DeepSpeed: every rank calls it
    if accelerator.is_main_process:
        accelerator.unwrap_model(model).save_pretrained(directory, state_dict=state_dict)
        tokenizer.save_pretrained(directory)


def save_checkpoint(accelerator: Any, model: Any, optimizer: Any, scheduler: Any, tokenizer: Any,
                    config: TrainConfig, settings: StudentSettings, state: TrainState, keep: int) -> Path:
    final = checkpoint_dir(config.output_dir, state.step)
    tmp = final.with_name(final.name + ".tmp")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    save_model(accelerator, model, tokenizer, tmp)
    if sharded(accelerator):
        accelerator.save_state(str(tmp / "accelerate"))
    elif accelerator.is_main_process:
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    if accelerator.is_main_process:
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    rank = accelerator.process_index
    torch.save({**_rng_state(), "tokens": state.tokens}, tmp / f"rng_state_{rank}.pt")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        config.dump(tmp / CONFIG_FILE)
        settings.save(tmp)
        (tmp / STATE_FILE).write_text(json.dumps(asdict(state), indent=2) + "\n")
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        _prune(Path(config.output_dir) / "checkpoints", keep)
    accelerator.wait_for_everyone()
    return final


def _prune(directory: Path, keep: int) -> None:
    if keep <= 0:
        return
    done = sorted((p for p in directory.glob("step-*") if p.name.removeprefix("step-").isdigit()),
                  key=lambda p: int(p.name.removeprefix("step-")))
    for old in done[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(accelerator: Any, directory: Path, optimizer: Any, scheduler: Any) -> TrainState:
    """Restore optimizer, scheduler and RNG states (the weights were loaded with the model)."""
    state = TrainState(**json.loads((directory / STATE_FILE).read_text()))
    if sharded(accelerator):
        accelerator.load_state(str(directory / "accelerate"))
    else:
        optimizer.load_state_dict(torch.load(directory / "optimizer.pt", map_location="cpu", weights_only=False))
    scheduler.load_state_dict(torch.load(directory / "scheduler.pt", weights_only=False))
    rng_file = directory / f"rng_state_{accelerator.process_index}.pt"
    if rng_file.is_file():  # absent when resuming on more processes than saved it
        rng = torch.load(rng_file, map_location="cpu", weights_only=False)
        _set_rng_state(rng)
        state.tokens = rng["tokens"]
    return state

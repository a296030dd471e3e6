"""Training telemetry: metrics as JSONL (plus TensorBoard/W&B when installed) and a rich progress line."""
from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from distill.progress import console, eta, plain_lines
from distill.train.config import TrainConfig


def trackers(config: TrainConfig) -> list[str]:
    """Experiment trackers to log to: `auto` picks TensorBoard when installed, W&B when also configured."""
    if config.trackers == "none":
        return []
    if isinstance(config.trackers, list):
        return config.trackers
    found = []
    if importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX"):
        found.append("tensorboard")
    if importlib.util.find_spec("wandb") and (os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE")):
        found.append("wandb")
    return found


def truncate_metrics(path: Path, after_step: int) -> None:
    """Drop rows logged after `after_step` (by a run killed past its last checkpoint)."""
    if not path.is_file():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= after_step]
    path.write_text("".join(line + "\n" for line in keep))


class MetricsLog:
    """Appends metric rows to `metrics.jsonl` and forwards them to the accelerate trackers."""

    def __init__(self, path: Path, accelerator: Any):
        self.accelerator = accelerator
        self.file = open(path, "a", encoding="utf-8") if accelerator.is_main_process else None

    def write(self, row: dict[str, Any]) -> None:
        if self.file is None:
            return
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()
        self.accelerator.log({k: v for k, v in row.items() if k != "step"}, step=row["step"])

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


class StepProgress:
    """`step n/N  loss  lr  tok/s  elapsed  ETA` on stderr, main process only."""

    def __init__(self, total: int, start: int, enabled: bool):
        columns = (TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("loss {task.fields[loss]}"), TextColumn("lr {task.fields[lr]}"),
                   TextColumn("{task.fields[tps]} tok/s"), TimeElapsedColumn(), TimeRemainingColumn())
        self.progress = Progress(*columns, console=console, disable=not enabled or not console.is_terminal)
        self.task = self.progress.add_task("train", total=total, completed=start, loss="-", lr="-", tps="-")
        self.started, self.start, self.total = time.perf_counter(), start, total
        self.plain = plain_lines(self.line, enabled=enabled)

    def line(self) -> str:
        task = self.progress.tasks[0]
        elapsed = time.perf_counter() - self.started
        return (f"train: step {task.completed:.0f}/{self.total}, loss {task.fields['loss']}, lr {task.fields['lr']}, "
                f"{task.fields['tps']} tok/s, {elapsed:.0f} s, {eta(task.completed - self.start, self.total - self.start, elapsed)}")

    def __enter__(self) -> "StepProgress":
        self.progress.start()
        self.plain.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.plain.__exit__(*exc)
        self.progress.stop()

    def advance(self, **fields: str) -> None:
        self.progress.update(self.task, advance=1, **fields)

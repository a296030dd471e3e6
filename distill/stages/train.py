"""The train stage: resolve a student's config (preset, resume, overrides) and train it, in this
process or across several through `accelerate launch`, returning when training has finished."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.progress import console
from distill.recipe import merge
from distill.records import InputError
from distill.stages import Stage, register_stage

# Option -> config key (options left unset keep the preset's value).
CONFIG_KEYS = {
    "student": "student", "data": "data", "output": "output_dir", "tokenizer": "tokenizer", "epochs": "epochs",
    "max_steps": "max_steps", "lr": "lr", "batch_size": "batch_size", "max_tokens": "max_tokens",
    "grad_accum": "grad_accum", "prompt_format": "prompt_format", "mixed_precision": "mixed_precision",
    "save_every": "save_every", "eval_every": "eval_every", "seed": "seed", "lora": "lora.enabled",
    "lora_r": "lora.r", "gradient_checkpointing": "gradient_checkpointing", "objective": "objective",
    "kd_alpha": "kd_alpha", "teacher": "teacher", "beta": "beta", "on_policy_fraction": "on_policy_fraction",
}


@dataclass(frozen=True)
class TrainOptions:
    student: str | None = None
    data: str | None = None
    output: str | None = None
    recipe: str | None = None  # a preset name in recipes/students or a YAML path
    set: tuple[str, ...] = ()  # KEY=VALUE overrides of any config key
    resume: bool = False
    overwrite: bool = False
    tokenizer: str | None = None
    epochs: int | None = None
    max_steps: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    max_tokens: int | None = None
    grad_accum: int | None = None
    prompt_format: str | None = None
    mixed_precision: str | None = None
    save_every: int | None = None
    eval_every: int | None = None
    lora: bool | None = None
    lora_r: int | None = None
    gradient_checkpointing: bool | None = None
    objective: str | None = None  # sft | kd | gkd
    kd_alpha: float | None = None
    teacher: str | None = None
    beta: float | None = None
    on_policy_fraction: float | None = None
    seed: int | None = None
    num_processes: int | None = None
    accelerate_config: str | None = None
    push_to_hub: str | None = None  # also upload the student (and its card) to this hub repo


def resolve_config(opts: TrainOptions) -> Any:
    """The run's TrainConfig: defaults, the preset (or the run's own config on resume), the options."""
    from distill.train.checkpoint import CONFIG_FILE
    from distill.train.config import load_config, nest, parse_set, preset_for_student

    overrides = {key: getattr(opts, name) for name, key in CONFIG_KEYS.items() if getattr(opts, name) is not None}
    recipe = opts.recipe
    if opts.resume:  # the run's own resolved config, plus whatever is overridden now
        if not opts.output:
            raise InputError("--resume needs -o/--output: the run to continue")
        recipe = str(Path(opts.output, CONFIG_FILE))
        if not Path(recipe).is_file():
            raise InputError("nothing to resume: no train_config.yaml", opts.output)
    elif recipe is None and opts.student:
        preset = preset_for_student(opts.student)
        if preset is not None:
            recipe = str(preset)
            if opts.student == preset.stem:  # a preset name, not a model: the preset says which model
                del overrides["student"]
            console.print(f"student preset: {preset.name}")
    return load_config(recipe, merge(nest(overrides), parse_set(opts.set)))


def launch(config: Any, *, resume: bool, overwrite: bool, num_processes: int | None,
           accelerate_config: str | None) -> None:
    """Train `config` on several processes through `accelerate launch`; returns when all have
    finished, raises when one failed."""
    with tempfile.TemporaryDirectory(prefix="distill-launch-") as tmp:
        path = Path(tmp, "train_config.yaml")
        config.dump(path)
        cmd = [sys.executable, "-m", "accelerate.commands.launch"]
        if accelerate_config:
            cmd += ["--config_file", accelerate_config]
        if num_processes:
            cmd += ["--num_processes", str(num_processes)] + (["--multi_gpu"] if num_processes > 1 else [])
            if not accelerate_config:
                cmd += ["--main_process_port", "0"]  # a free port
        cmd += ["-m", "distill.train.worker", str(path)] + ["--resume"] * resume + ["--overwrite"] * overwrite
        code = subprocess.call(cmd)
    if code != 0:
        raise RuntimeError(f"training processes failed (exit status {code}); see their output above")


def run(opts: TrainOptions) -> Path:
    config = resolve_config(opts)
    out = Path(config.output_dir)
    main = os.environ.get("LOCAL_RANK", "0") == "0"
    fresh = not out.exists() or not any(out.iterdir())
    if main:
        console.print(f"training {config.student} on {config.data} -> {out}")
    try:
        if opts.num_processes or opts.accelerate_config:
            launch(config, resume=opts.resume, overwrite=opts.overwrite, num_processes=opts.num_processes,
                   accelerate_config=opts.accelerate_config)
        else:
            from distill.train import train

            train(config, resume=opts.resume, overwrite=opts.overwrite)
    except BaseException:
        if main and fresh and out.is_dir() and not (out / "checkpoints").exists():
            shutil.rmtree(out, ignore_errors=True)  # a run that never got going leaves nothing behind
        raise
    if opts.push_to_hub and main:
        push_student(out, opts.push_to_hub)
    return out


def push_student(out: Path, repo_id: str) -> None:
    """Upload the final student and its model card (not the checkpoints) to a hub model repo."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, repo_type="model", exist_ok=True)
    api.upload_folder(folder_path=str(out), repo_id=repo_id, repo_type="model", ignore_patterns=["checkpoints/*"])
    console.print(f"pushed {out} to https://huggingface.co/{repo_id}")


def show(out: Path) -> None:
    if os.environ.get("LOCAL_RANK", "0") == "0":
        console.print(f"student saved to {out} (metrics.jsonl, loss.png, checkpoints/)")


register_stage(Stage("train", TrainOptions, run, show,
                     aliases={"o": "output"}, resume="resume"))

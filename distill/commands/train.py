from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import click

from distill.progress import console
from distill.recipe import merge
from distill.records import InputError

# CLI flag -> config key (flags left unset keep the preset's value).
FLAG_KEYS = {
    "student": "student", "data": "data", "output": "output_dir", "tokenizer": "tokenizer", "epochs": "epochs",
    "max_steps": "max_steps", "lr": "lr", "batch_size": "batch_size", "max_tokens": "max_tokens",
    "grad_accum": "grad_accum", "prompt_format": "prompt_format", "mixed_precision": "mixed_precision",
    "save_every": "save_every", "eval_every": "eval_every", "seed": "seed", "lora": "lora.enabled",
    "lora_r": "lora.r", "gradient_checkpointing": "gradient_checkpointing",
}
LAUNCH_PARAMS = ("num_processes", "accelerate_config")


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def _command_line(ctx: click.Context) -> list[str]:
    """This command's options rebuilt from their parsed values, less the launch flags, so that a
    relaunch works however the command was invoked (shell, `distill run`, Python)."""
    argv: list[str] = []
    for p in ctx.command.params:
        value = ctx.params.get(p.name or "")
        if not isinstance(p, click.Option) or p.name in LAUNCH_PARAMS or value is None:
            continue
        flag = max(p.opts, key=len)
        if p.is_flag:
            if p.secondary_opts:  # --x/--no-x
                argv.append(flag if value else max(p.secondary_opts, key=len))
            elif value:
                argv.append(flag)
        elif p.multiple:
            for v in value:
                argv += [flag, str(v)]
        else:
            argv += [flag, str(value)]
    return argv


def _relaunch(ctx: click.Context, num_processes: int | None, accelerate_config: str | None) -> None:
    """Run this same command under `accelerate launch` (one process per GPU)."""
    launch = [sys.executable, "-m", "accelerate.commands.launch"]
    if accelerate_config:
        launch += ["--config_file", accelerate_config]
    if num_processes:
        launch += ["--num_processes", str(num_processes)] + (["--multi_gpu"] if num_processes > 1 else [])
        if not accelerate_config:
            launch += ["--main_process_port", "0"]  # a free port
    sys.exit(subprocess.call(launch + ["-m", "distill", "train", *_command_line(ctx)]))


@click.command(help="Fine-tune a student on an MTD data set (from `distill mix`) or a JSONL file of {input, target}.")
@click.option("--student", help="Hub id or model dir, tiny-t5 / tiny-llama, or a preset name (recipes/students).")
@click.option("--data", type=click.Path(exists=True), help="MTD dir (save_to_disk + mix.json) or JSONL file/dir.")
@click.option("-o", "--output", type=click.Path(file_okay=False), help="Output dir (final student, checkpoints, metrics).")
@click.option("--recipe", help="Student preset: a name in recipes/students or a YAML path (default: the one matching --student).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override any config key (dotted: lora.r=8).")
@click.option("--resume", is_flag=True, help="Continue the run in OUTPUT from its newest checkpoint, exactly.")
@click.option("--overwrite", is_flag=True, help="Start over in an OUTPUT that holds an earlier run.")
@click.option("--tokenizer", help="Tokenizer (default: the student's; ByT5 for the tiny students). train-bpe: trained on the data (tiny students).")
@click.option("--epochs", type=int)
@click.option("--max-steps", type=int, help="Stop after this many optimizer steps (overrides epochs).")
@click.option("--lr", type=float)
@click.option("--batch-size", type=int, help="Examples per micro-batch and process.")
@click.option("--max-tokens", type=int, help="Token budget per micro-batch (0: none).")
@click.option("--grad-accum", type=int, help="Micro-batches per optimizer step.")
@click.option("--prompt-format", type=click.Choice(["plain", "chat"]), help="Causal students: cue text or chat template.")
@click.option("--mixed-precision", type=click.Choice(["auto", "no", "bf16", "fp16"]))
@click.option("--save-every", type=int, help="Optimizer steps between checkpoints (0: only at the end).")
@click.option("--eval-every", type=int, help="Steps between validation passes (0: at each checkpoint).")
@click.option("--lora/--no-lora", default=None, help="LoRA adapters instead of full fine-tuning.")
@click.option("--lora-r", type=int)
@click.option("--gradient-checkpointing/--no-gradient-checkpointing", default=None)
@click.option("--seed", type=int)
@click.option("--num-processes", type=int, help="Launch through accelerate on this many GPUs.")
@click.option("--accelerate-config", type=click.Path(exists=True, dir_okay=False),
              help="accelerate config (recipes/accelerate/*.yaml: DDP, FSDP, DeepSpeed).")
def command(recipe: str | None, sets: tuple[str, ...], resume: bool, overwrite: bool, num_processes: int | None,
            accelerate_config: str | None, **flags: Any) -> None:
    if num_processes or accelerate_config:
        _relaunch(click.get_current_context(), num_processes, accelerate_config)
    from distill.train import train
    from distill.train.checkpoint import CONFIG_FILE
    from distill.train.config import load_config, parse_set, preset_for_student

    overrides = {FLAG_KEYS[k]: v for k, v in flags.items() if v is not None}
    if resume:  # the run's own resolved config, plus whatever is overridden now
        if not flags["output"]:
            raise InputError("--resume needs -o/--output: the run to continue")
        recipe = str(Path(flags["output"], CONFIG_FILE))
        if not Path(recipe).is_file():
            raise InputError("nothing to resume: no train_config.yaml", flags["output"])
    elif recipe is None and flags["student"]:
        preset = preset_for_student(flags["student"])
        if preset is not None:
            recipe = str(preset)
            if flags["student"] == preset.stem:  # a preset name, not a model: the preset says which model
                del overrides["student"]
            console.print(f"student preset: {preset.name}")
    config = load_config(recipe, merge(_nest(overrides), parse_set(sets)))
    if os.environ.get("LOCAL_RANK", "0") == "0":
        console.print(f"training {config.student} on {config.data} -> {config.output_dir}")
    out = train(config, resume=resume, overwrite=overwrite)
    if os.environ.get("LOCAL_RANK", "0") == "0":
        console.print(f"student saved to {out} (metrics.jsonl, loss.png, checkpoints/)")

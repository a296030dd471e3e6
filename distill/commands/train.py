from __future__ import annotations

from typing import Any

import click

from distill.stages import run_stage
from distill.stages.train import TrainOptions


@click.command(help="Fine-tune a student on an MTD data set (from `distill mix`) or a JSONL file of {input, target}.",
               epilog="\b\nExamples:\n  distill train --student codet5p-770m --data data/mtd -o runs/etd-770m\n  distill train --student tiny-t5 --tokenizer train-bpe --data data/mtd -o runs/tiny --max-steps 200\n  distill train --student llama2-7b-lora --data data/mtd -o runs/7b --num-processes 2\n  distill train --student tiny-t5 --tokenizer runs/teacher --objective gkd --teacher hf:runs/teacher --data data/mtd -o runs/gkd")
@click.option("--student", help="Hub id or model dir, tiny-t5 / tiny-llama, or a preset name (recipes/students).")
@click.option("--data", type=click.Path(exists=True), help="MTD dir (save_to_disk + mix.json) or JSONL file/dir.")
@click.option("-o", "--output", type=click.Path(file_okay=False), help="Output dir (final student, checkpoints, metrics).")
@click.option("--recipe", help="Student preset: a name in recipes/students or a YAML path (default: the one matching --student).")
@click.option("--set", multiple=True, metavar="KEY=VALUE", help="Override any config key (dotted: lora.r=8).")
@click.option("--resume", is_flag=True, help="Continue the run in OUTPUT from its newest checkpoint, exactly.")
@click.option("--overwrite", is_flag=True, help="Start over in an OUTPUT that holds an earlier run.")
@click.option("--tokenizer", help="Tokenizer (default: the student's; ByT5 for the tiny students). train-bpe: trained on the data (tiny students).")
@click.option("--epochs", type=int, help="Passes over the training set [preset: 3].")
@click.option("--max-steps", type=int, help="Stop after this many optimizer steps (overrides epochs).")
@click.option("--lr", type=float, help="Peak learning rate [preset].")
@click.option("--batch-size", type=int, help="Examples per micro-batch and process.")
@click.option("--max-tokens", type=int, help="Token budget per micro-batch (0: none).")
@click.option("--grad-accum", type=int, help="Micro-batches per optimizer step.")
@click.option("--prompt-format", type=click.Choice(["plain", "chat"]), help="Causal students: cue text or chat template.")
@click.option("--mixed-precision", type=click.Choice(["auto", "no", "bf16", "fp16"]), help="auto: bf16 where the GPU has it [auto].")
@click.option("--save-every", type=int, help="Optimizer steps between checkpoints (0: only at the end).")
@click.option("--eval-every", type=int, help="Steps between validation passes (0: at each checkpoint).")
@click.option("--lora/--no-lora", default=None, help="LoRA adapters instead of full fine-tuning.")
@click.option("--lora-r", type=int, help="LoRA rank [preset: 16].")
@click.option("--gradient-checkpointing/--no-gradient-checkpointing", default=None, help="Recompute activations to save memory [preset].")
@click.option("--objective", type=click.Choice(["sft", "kd", "gkd"]),
              help="sft: the data's tokens; kd: the teacher's stored top-k log-probs; gkd: on-policy, the teacher scores the student's samples [sft].")
@click.option("--kd-alpha", type=float, help="kd: weight of the SFT term, loss = (1-a) KL + a CE [0].")
@click.option("--teacher", help="hf:PATH: gkd's scoring teacher (loaded once, frozen); kd: its tokenizer is checked.")
@click.option("--beta", type=float, help="gkd: 0 forward KL, 1 reverse KL, in between generalised JSD [0].")
@click.option("--on-policy-fraction", type=float, help="gkd: share of micro-batches sampled by the student [1].")
@click.option("--seed", type=int, help="Seed of initialisation, data order and dropout [42].")
@click.option("--num-processes", type=int, help="Launch through accelerate on this many GPUs.")
@click.option("--accelerate-config", type=click.Path(exists=True, dir_okay=False),
              help="accelerate config (recipes/accelerate/*.yaml: DDP, FSDP, DeepSpeed).")
@click.option("--push-to-hub", metavar="REPO_ID", help="Also upload the student and its model card to the hub.")
def command(**params: Any) -> None:
    run_stage("train", TrainOptions(**params))

from __future__ import annotations

from typing import Any

import click

from distill.commands.options import decontaminate_option, thoughts_option
from distill.decontam import NGRAM, THRESHOLD
from distill.stages import run_stage
from distill.stages.mix import MixStageOptions


@click.command(help="Build a Mix-Thoughts (MTD) training set from `distill generate` outputs IN.jsonl... "
                    "into the directory OUT (a `datasets` DatasetDict, JSONL, README.md and mix.json).",
               epilog="\b\nExamples:\n  distill mix runs/gsm8k.jsonl -o data/mtd\n  distill mix runs/*.jsonl -o data/mtd --thoughts pot,eot --per-question 2 --balance")
@click.argument("inputs", metavar="IN.jsonl...", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it is an earlier `distill mix` output.")
@thoughts_option((), "Thoughts to keep, comma-separated [every registered thought].")
@click.option("--student-cues", default="etd", show_default=True, help="Cue set (name in the cues file).")
@click.option("--cues-file", type=click.Path(exists=True, dir_okay=False), help="Your own cues YAML (default: prompts/cues.yaml).")
@click.option("--keep-incorrect", is_flag=True, help="Keep rationales with a wrong or unchecked answer too.")
@click.option("--per-question", type=int, help="At most K rationales per question and thought (lowest sample first).")
@click.option("--balance", is_flag=True, help="Downsample every thought to the count of the rarest one.")
@click.option("--val-fraction", default=0.05, show_default=True, help="Share of questions in validation (0: none).")
@click.option("--seed", default=0, show_default=True, help="Seed of the split and of --balance.")
@decontaminate_option
@click.option("--decontam-ngram", default=NGRAM, show_default=True, help="Word n-gram size of the overlap test.")
@click.option("--decontam-threshold", default=THRESHOLD, show_default=True,
              help="Drop a question when this share of the shorter question's n-grams is shared.")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Where the evaluation sets live (see `distill.data`).")
@click.option("--tokenizer", help="Student tokenizer (hub name or local dir): turns the length filter on.")
@click.option("--max-source-tokens", default=256, show_default=True, help="With --tokenizer: drop examples whose input is longer.")
@click.option("--max-target-tokens", default=256, show_default=True, help="With --tokenizer: drop examples whose target is longer.")
@click.option("--push-to-hub", metavar="REPO_ID", help="Also upload the data set and its card to the hub.")
def command(**params: Any) -> None:
    run_stage("mix", MixStageOptions(**params))

from __future__ import annotations

from typing import Any

import click

from distill.commands.options import decontaminate_option, teacher_backend_options, thoughts_option
from distill.decontam import NGRAM, THRESHOLD
from distill.stages import run_stage
from distill.stages.synth import SynthOptions


@click.command(help="Write new questions from seed questions (Xwin-Math style: write, solve, check, amend in one "
                    "call), solve each with several thoughts/samples and keep those whose answers agree; the "
                    "majority answer becomes the gold. Accepted questions go to OUT (a data set for `distill "
                    "generate --data`), rejected ones to OUT.rejected.jsonl. Rerunning the same command resumes.",
               epilog="\b\nExamples:\n  distill synth --seed-data gsm8k:train --n 20000 --teacher openai:gpt-4o-mini -o runs/synth.jsonl\n  distill synth --seed-data world:train --n 100 --teacher world: -o runs/world_synth.jsonl")
@click.option("--seed-data", required=True, help="Seed questions (gsm8k:train, world:train, a file, a hub id).")
@click.option("--limit", type=int, help="Only the first N seed questions.")
@click.option("-n", "--n", "n", default=1000, show_default=True, help="New questions to write (seeds are cycled).")
@click.option("--teacher", required=True, help="openai:MODEL, hf:MODEL, vllm:MODEL or world: (which also writes).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Output JSONL.")
@click.option("--overwrite", is_flag=True, help="Start afresh: delete OUT, its side files and journals first.")
@thoughts_option(("pot", "eot"), "Thoughts that solve each new question; comma-separated or repeated.")
@click.option("--samples", default=2, show_default=True, help="Solving samples per question and thought.")
@click.option("--agreement", default=0.75, show_default=True,
              help="Accept when the majority answer has this share of all votes (thoughts x samples).")
@click.option("--prompt", type=click.Path(exists=True, dir_okay=False),
              help="Own question-writing prompt (YAML like prompts/synth.yaml).")
@click.option("--temperature", default=0.7, show_default=True, help="Of writing and solving.")
@click.option("--max-tokens", default=1024, show_default=True, help="Of a question-writing answer.")
@click.option("--concurrency", default=16, show_default=True, help="Requests in flight at most.")
@click.option("--dedupe-ngram", default=5, show_default=True, help="Word n-gram size of the near-duplicate test.")
@click.option("--dedupe-threshold", default=0.8, show_default=True,
              help="A new question overlapping a seed or an earlier one this much is a duplicate.")
@decontaminate_option
@click.option("--decontam-ngram", default=NGRAM, show_default=True, help="Word n-gram size of the decontamination test.")
@click.option("--decontam-threshold", default=THRESHOLD, show_default=True, help="Drop a new question sharing this share of an evaluation question's n-grams.")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Where the data sets live (see `distill.data`).")
@click.option("--prices", type=click.Path(exists=True, dir_okay=False), help="Prices file [prompts/prices.yaml].")
@click.option("--program-timeout", "--check-timeout", "check_timeout", default=5.0, show_default=True, help="Seconds per program/system when checking.")
@click.option("--workers", type=int, help="Executor processes for PoT (default: one per core).")
@teacher_backend_options
@click.option("--no-progress", is_flag=True, help="No live progress display.")
def command(**params: Any) -> None:
    run_stage("synth", SynthOptions(**params))

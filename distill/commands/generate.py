from __future__ import annotations

import sys
from typing import Any

import click

from distill.commands.options import teacher_backend_options, thoughts_option
from distill.stages import run_stage
from distill.stages.generate import GenerateOptions, exit_code


@click.command(help="Prompt a teacher for rationales, validate each against the gold answer, write every attempt. "
                    "Rerunning the same command resumes: answered requests are never sent again.",
               epilog="\b\nExamples:\n  distill generate --thoughts pot,eot,cot --data gsm8k:train --teacher openai:gpt-4o-mini --samples 4 -o runs/gsm8k.jsonl\n  distill generate --thoughts pot --data world:train?n=200 --teacher world: -o runs/world_pot.jsonl")
@thoughts_option()
@click.option("--data", required=True, help="Data set spec (gsm8k:train, a .jsonl/.json/.csv path, a hub id).")
@click.option("--limit", type=int, help="Only the first N items.")
@click.option("--shard", help="Only shard i/n of the items (after --limit).")
@click.option("--teacher", required=True, help="openai:MODEL, hf:MODEL (hub id or path), vllm:MODEL or world:.")
@click.option("--samples", default=1, show_default=True, help="Samples per question and thought.")
@click.option("--n-per-request", type=int, help="Samples asked for per request (default: all of them at once).")
@click.option("--max-samples-until-correct", type=int,
              help="Stop sampling a question once this many correct rationales exist (samples are drawn in rounds).")
@click.option("--keep", type=click.Choice(["all", "correct"]), default="all", show_default=True,
              help="Write every attempt, or only the correct ones (the journal keeps all answers either way).")
@click.option("--concurrency", default=16, show_default=True, help="Requests in flight at most.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Output JSONL.")
@click.option("--overwrite", is_flag=True, help="Start afresh: delete OUT and its journal first.")
@click.option("--prompt", multiple=True, type=click.Path(dir_okay=False),
              help="Own prompt file (YAML like prompts/cot.yaml), or a shipped one by name (math_cot.yaml), for "
                   "the thought it names; repeatable. Default: the data set's own (MATH: math_cot.yaml, "
                   "math_pot.yaml), else the thought's.")
@click.option("--temperature", default=0.7, show_default=True, help="Sampling temperature of the teacher.")
@click.option("--top-p", default=1.0, show_default=True, help="Nucleus sampling: keep this share of probability mass.")
@click.option("--max-tokens", default=512, show_default=True, help="Tokens per rationale at most (longer ones are truncated).")
@click.option("--prices", type=click.Path(exists=True, dir_okay=False), help="Prices file [prompts/prices.yaml].")
@click.option("--program-timeout", "--check-timeout", "check_timeout", default=5.0, show_default=True, help="Seconds per program/system when validating.")
@click.option("--workers", type=int, help="Executor processes for PoT (default: one per core).")
@click.option("--logprobs", default=0, show_default=True, metavar="K",
              help="Keep the teacher's top-K log-probs per generated token (hf:, or a server returning token ids), "
                   "for `distill train --objective kd`.")
@click.option("--max-rounds", default=6, show_default=True,
              help="tir: teacher rounds per trace at most; between two, the trace's code cell runs in the sandbox "
                   "and its output is appended.")
@teacher_backend_options
@click.option("--no-progress", is_flag=True, help="No live progress display.")
def command(**params: Any) -> None:
    sys.exit(exit_code(run_stage("generate", GenerateOptions(**params))))

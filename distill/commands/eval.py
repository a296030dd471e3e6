from __future__ import annotations

from typing import Any

import click

from distill.stages import run_stage
from distill.stages.eval import EvalOptions
from distill.thoughts import parse_thoughts


@click.command(help="Decode each question once per thought, answer with fallback (and vote), report accuracy.",
               epilog="\b\nExamples:\n  distill eval --model runs/etd-770m --data gsm8k:test,svamp --thoughts pot,eot,cot --fallback pot,eot,cot --vote\n  distill eval --predictions runs/gsm8k.jsonl -o runs/eval/teacher")
@click.option("--model", help="Student dir, local/hub model, or a teacher spec (openai:MODEL, hf:..., vllm:...).")
@click.option("--predictions", multiple=True,
              help="Score existing generate/eval predictions (Records JSONL) instead of decoding; repeatable or comma-separated.")
@click.option("--data", default="gsm8k:test", show_default=True, help="Comma-separated data sets (gsm8k:test,svamp,asdiv,multiarith, files).")
@click.option("--thoughts", "--thought", "thoughts", default=None, help="Thoughts to decode, the cue selects each (tir runs its code cells as it goes) [pot,eot,cot; with --predictions: those present].")
@click.option("--fallback", default=None, help="Fallback order (default: the --thoughts order).")
@click.option("--vote", is_flag=True, help="Also answer by a majority vote across thoughts (ties: fallback order).")
@click.option("-o", "--output", type=click.Path(file_okay=False), help="Output directory [runs/eval/<model>].")
@click.option("--overwrite", is_flag=True, help="Replace an output directory that holds another config.")
@click.option("--limit", type=int, default=None, help="First N questions of each data set.")
@click.option("--data-dir", default=None, help="Where the publishers' data files live.")
@click.option("--samples", default=1, show_default=True, help="Samples per question and thought (pass@k, maj@k).")
@click.option("--temperature", default=0.0, show_default=True, help="0: greedy.")
@click.option("--top-p", default=1.0, show_default=True, help="Nucleus sampling (with --temperature > 0).")
@click.option("--seed", default=0, show_default=True, help="Seed of sampling.")
@click.option("--max-new-tokens", default=256, show_default=True, help="Tokens per rationale at most.")
@click.option("--max-rounds", default=4, show_default=True,
              help="Tool-integrated thoughts (tir): decoding rounds per sample; the code cells run between them.")
@click.option("--batch-tokens", type=int, default=None, help="KV-cache tokens per batch (default: from free GPU memory).")
@click.option("--max-batch", default=1024, show_default=True, help="Sequences per batch at most.")
@click.option("--expected-new-tokens", type=float, default=None,
              help="Mean tokens a rationale is expected to take: the batch plan then counts continuous batching's "
                   "one tail per bucket and the prefill, and makes fewer buckets (default: every rationale all "
                   "--max-new-tokens). Greedy decoding of T5 and LLaMA students only (the static loop).")
@click.option("--device", default=None, help="cuda, cpu, cuda:1 ... (default: cuda when available).")
@click.option("--gpus", type=int, default=None,
              help="Data parallel: shard the questions over N processes, one per GPU (with --device cpu: N CPU processes).")
@click.option("--engine", type=click.Choice(["auto", "hf", "vllm"]), default="auto", show_default=True,
              help="Decoder: transformers (hf), vLLM, or auto (vLLM for causal students on CUDA when installed).")
@click.option("--no-compile", is_flag=True, help="Do not compile the decode step (static cache on CUDA).")
@click.option("--program-timeout", "--timeout", "timeout", default=5.0, show_default=True, help="Seconds per program/system.")
@click.option("--workers", type=int, default=None, help="Executor processes (default: one per core).")
def command(predictions: tuple[str, ...], thoughts: str | None, fallback: str | None, **params: Any) -> None:
    files = tuple(p for spec in predictions for p in spec.split(",") if p)
    run_stage("eval", EvalOptions(predictions=files, thoughts=tuple(parse_thoughts(thoughts)),
                                  fallback=tuple(parse_thoughts(fallback)), **params))

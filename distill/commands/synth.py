from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from distill.commands.generate import _teacher_options, _thoughts
from distill.commands.generate import command as generate_command
from distill.commands.mix import _names
from distill.decontam import DEFAULT_EVAL_SETS, NGRAM, THRESHOLD
from distill.progress import console
from distill.synth import SynthResult, SynthSettings, paths, synth

# Teacher-backend flags, shared with `distill generate` (same names, same help).
BACKEND = ("base_url", "api_key", "timeout", "max_retries", "rpm", "tpm", "n_mode", "device", "dtype", "batch_size")


def summary(result: SynthResult) -> Table:
    r = result.report
    table = Table(title=f"distill synth -> {result.out}", show_header=False)
    table.add_row("seed questions", str(r["seeds"]))
    table.add_row("questions written", str(r["candidates"]))
    table.add_row("solved (passed the filters)", str(r["solved"]))
    table.add_row("accepted", f"{r['accepted']} ({r['acceptance_of_solved']:.1%} of solved, "
                              f"agreement >= {r['settings']['agreement']:g} of {r['settings']['votes']} votes)")
    for reason, count in r["rejected"].items():
        table.add_row(f"  rejected: {reason}", str(count))
    if r.get("precision") is not None:
        table.add_row("precision of accepted answers", f"{r['precision']:.1%} (a single sample: "
                                                       f"{r['precision_first_sample']:.1%})")
    total = r["ledger"]["total"]
    cost = f"${total['cost_usd']:.4f}" if total["cost_usd"] is not None else "cost unknown (no price)"
    table.add_row("tokens (all runs)", f"{total['prompt_tokens']:,} + {total['completion_tokens']:,}, {cost}")
    return table


@click.command(help="Write new questions from seed questions (Xwin-Math style: write, solve, check, amend in one "
                    "call), solve each with several thoughts/samples and keep those whose answers agree; the "
                    "majority answer becomes the gold. Accepted questions go to OUT (a data set for `distill "
                    "generate --data`), rejected ones to OUT.rejected.jsonl. Rerunning the same command resumes.")
@click.option("--seed-data", required=True, help="Seed questions (gsm8k:train, world:train, a file, a hub id).")
@click.option("--limit", type=int, help="Only the first N seed questions.")
@click.option("-n", "--n", "n", default=1000, show_default=True, help="New questions to write (seeds are cycled).")
@click.option("--teacher", required=True, help="openai:MODEL, hf:MODEL, vllm:MODEL or world: (which also writes).")
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False), help="Output JSONL.")
@click.option("--overwrite", is_flag=True, help="Start afresh: delete OUT, its side files and journals first.")
@click.option("--thought", "thoughts", multiple=True, default=("pot", "eot"), show_default=True, callback=_thoughts,
              help="Thoughts that solve each new question; repeat or comma-separate.")
@click.option("--samples", default=2, show_default=True, help="Solving samples per question and thought.")
@click.option("--agreement", default=0.75, show_default=True,
              help="Accept when the majority answer has this share of all votes (thoughts x samples).")
@click.option("--prompt", "prompt_file", type=click.Path(exists=True, dir_okay=False),
              help="Own question-writing prompt (YAML like prompts/synth.yaml).")
@click.option("--temperature", default=0.7, show_default=True, help="Of writing and solving.")
@click.option("--max-tokens", default=1024, show_default=True, help="Of a question-writing answer.")
@click.option("--concurrency", default=16, show_default=True, help="Requests in flight at most.")
@click.option("--dedupe-ngram", default=5, show_default=True, help="Word n-gram size of the near-duplicate test.")
@click.option("--dedupe-threshold", default=0.8, show_default=True,
              help="A new question overlapping a seed or an earlier one this much is a duplicate.")
@click.option("--decontaminate", default=",".join(DEFAULT_EVAL_SETS), show_default=True,
              help="Evaluation sets to decontaminate against (data set specs), or `none`.")
@click.option("--decontam-ngram", default=NGRAM, show_default=True)
@click.option("--decontam-threshold", default=THRESHOLD, show_default=True)
@click.option("--data-dir", type=click.Path(file_okay=False), help="Where the data sets live (see `distill.data`).")
@click.option("--prices", type=click.Path(exists=True, dir_okay=False), help="Prices file [prompts/prices.yaml].")
@click.option("--check-timeout", default=5.0, show_default=True, help="Seconds per program/system when checking.")
@click.option("--workers", type=int, help="Executor processes for PoT (default: one per core).")
@click.option("--no-progress", is_flag=True, help="No live progress display.")
def command(seed_data: str, limit: int | None, n: int, teacher: str, out: str, overwrite: bool,
            thoughts: list[str], samples: int, agreement: float, prompt_file: str | None, temperature: float,
            max_tokens: int, concurrency: int, dedupe_ngram: int, dedupe_threshold: float, decontaminate: str,
            decontam_ngram: int, decontam_threshold: float, data_dir: str | None, prices: str | None,
            check_timeout: float, workers: int | None, no_progress: bool, **backend: Any) -> None:
    options = _teacher_options(teacher, **backend)
    settings = SynthSettings(n=n, thoughts=tuple(thoughts), samples=samples, agreement=agreement,
                             temperature=temperature, max_tokens=max_tokens, dedupe_ngram=dedupe_ngram,
                             dedupe_threshold=dedupe_threshold, decontaminate=_names(decontaminate),
                             decontam_ngram=decontam_ngram, decontam_threshold=decontam_threshold)
    result = synth(seed_data, teacher, out, settings=settings, limit=limit, prompt_file=prompt_file,
                   concurrency=concurrency, overwrite=overwrite, prices=prices, data_dir=data_dir,
                   teacher_options=options, timeout=check_timeout, workers=workers, show_progress=not no_progress)
    console.print(summary(result))
    files = paths(result.out)
    console.print(f"wrote {result.report['accepted']} questions to {out}; rejected in {files['rejected']}, "
                  f"votes in {files['solutions']}, report in {files['report']}, ledger in {files['ledger']}")


command.params += [p for p in generate_command.params if p.name in BACKEND]

from __future__ import annotations

import click

from distill.stages import run_stage
from distill.stages.validate import ValidateOptions


@click.command(help="Check each rationale of IN.jsonl and write OUT.jsonl with prediction, status and correct.",
               epilog="\b\nExamples:\n  distill validate --thoughts pot ../shared/data/recorded/multiarith_pot_codex_zeroshot.jsonl --rationale-field generated -o checked.jsonl")
@click.option("--thoughts", "--thought", "thoughts", required=True,
              help="How the rationales are written: one registered thought (cot, pot, eot, ...).")
@click.argument("input", metavar="IN.jsonl", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Output JSONL.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
@click.option("--question-field", default="question", show_default=True, help="Field holding the question.")
@click.option("--rationale-field", default="rationale", show_default=True, help="Field holding the rationale.")
@click.option("--answer-field", default="answer", show_default=True, help="Gold answer (number or text like '#### 72').")
@click.option("--answers", type=click.Choice(["auto", "number", "latex"]), default="auto", show_default=True,
              help="Golds that are not one number: LaTeX answers compared mathematically (MATH), or unknown; "
                   "auto: LaTeX when some such gold is written in LaTeX.")
@click.option("--program-timeout", "--timeout", "timeout", default=5.0, show_default=True, help="Seconds per program/system.")
@click.option("--workers", type=int, default=None, help="Executor processes (default: one per core).")
def command(**params: object) -> None:
    run_stage("validate", ValidateOptions(**params))  # type: ignore[arg-type]

from __future__ import annotations

import click
from rich.table import Table

from distill.progress import console
from distill.records import THOUGHTS
from distill.validate import Summary, validate_file


def summary_table(summary: Summary, thought: str) -> Table:
    table = Table(title=f"distill validate --thought {thought}")
    table.add_column("outcome")
    table.add_column("count", justify="right")
    table.add_column("share", justify="right")
    rows = [("kept (correct)", summary.kept), ("wrong answer", summary.wrong)]
    if summary.no_gold:
        rows.append(("answer, no gold", summary.no_gold))
    rows += [(f"failed: {cls}", n) for cls, n in summary.failures.most_common()]
    for label, n in rows:
        table.add_row(label, str(n), f"{n / max(summary.total, 1):.1%}")
    table.add_row("total", str(summary.total), "", style="bold")
    return table


@click.command(help="Check each rationale of IN.jsonl and write OUT.jsonl with prediction, status and correct.")
@click.option("--thought", type=click.Choice(THOUGHTS), required=True, help="How the rationales are written.")
@click.argument("in_path", metavar="IN.jsonl", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", "out_path", required=True, type=click.Path(dir_okay=False), help="Output JSONL.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
@click.option("--question-field", default="question", show_default=True)
@click.option("--rationale-field", default="rationale", show_default=True)
@click.option("--answer-field", default="answer", show_default=True, help="Gold answer (number or text like '#### 72').")
@click.option("--timeout", default=5.0, show_default=True, help="Seconds per program/system.")
@click.option("--workers", type=int, default=None, help="Executor processes (default: one per core).")
def command(thought: str, in_path: str, out_path: str, overwrite: bool, question_field: str,
            rationale_field: str, answer_field: str, timeout: float, workers: int | None) -> None:
    summary = validate_file(
        thought, in_path, out_path, overwrite=overwrite, question_field=question_field,
        rationale_field=rationale_field, answer_field=answer_field, timeout=timeout, workers=workers,
    )
    console.print(summary_table(summary, thought))
    console.print(f"wrote {summary.total} records to {out_path}")

"""The validate stage: check each rationale of a file and write prediction, status and correct."""
from __future__ import annotations

from dataclasses import dataclass

from rich.table import Table

from distill.progress import console
from distill.stages import Stage, register_stage
from distill.thoughts import parse_thoughts
from distill.validate import Summary, validate_file


@dataclass(frozen=True)
class ValidateOptions:
    thoughts: str  # the one thought the rationales are written in
    input: str
    output: str
    overwrite: bool = False
    question_field: str = "question"
    rationale_field: str = "rationale"
    answer_field: str = "answer"
    timeout: float = 5.0
    workers: int | None = None
    answers: str = "auto"  # string golds: auto | number | latex (distill.validate.latex_golds)


@dataclass
class ValidateResult:
    options: ValidateOptions
    summary: Summary


def run(opts: ValidateOptions) -> ValidateResult:
    thoughts = parse_thoughts(opts.thoughts)
    if len(thoughts) != 1:
        from distill.records import InputError

        raise InputError(f"--thoughts: validate checks one thought per file, got {opts.thoughts!r}")
    summary = validate_file(thoughts[0], opts.input, opts.output, overwrite=opts.overwrite,
                            question_field=opts.question_field, rationale_field=opts.rationale_field,
                            answer_field=opts.answer_field, timeout=opts.timeout, workers=opts.workers,
                            answers=opts.answers)
    return ValidateResult(opts, summary)


def summary_table(summary: Summary, thought: str) -> Table:
    table = Table(title=f"distill validate --thoughts {thought}")
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


def show(result: ValidateResult) -> None:
    console.print(summary_table(result.summary, result.options.thoughts))
    n = result.summary.total
    console.print(f"wrote {n} record{'s' if n != 1 else ''} to {result.options.output}")


register_stage(Stage("validate", ValidateOptions, run, show,
                     inputs="input", aliases={"thought": "thoughts", "o": "output", "in_path": "input",
                              "program_timeout": "timeout"}))

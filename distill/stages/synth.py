"""The synth stage: write new questions from seeds and label them by agreement (Xwin-Math style)."""
from __future__ import annotations

from dataclasses import dataclass

from rich.table import Table

from distill.decontam import DEFAULT_EVAL_SETS, NGRAM, THRESHOLD
from distill.progress import console
from distill.stages import Stage, register_stage
from distill.stages.generate import TeacherOptions, backend_options
from distill.synth import SynthResult, SynthSettings, paths, synth


@dataclass(frozen=True)
class SynthOptions(TeacherOptions):
    seed_data: str = ""
    teacher: str = ""
    output: str = ""
    limit: int | None = None
    n: int = 1000
    overwrite: bool = False
    thoughts: tuple[str, ...] = ("pot", "eot")
    samples: int = 2
    agreement: float = 0.75
    prompt: str | None = None
    temperature: float = 0.7
    max_tokens: int = 1024
    concurrency: int = 16
    dedupe_ngram: int = 5
    dedupe_threshold: float = 0.8
    decontaminate: tuple[str, ...] = DEFAULT_EVAL_SETS  # () or ("none",): off
    decontam_ngram: int = NGRAM
    decontam_threshold: float = THRESHOLD
    data_dir: str | None = None
    prices: str | None = None
    check_timeout: float = 5.0
    workers: int | None = None
    no_progress: bool = False


def run(opts: SynthOptions) -> SynthResult:
    from distill.records import InputError

    for name in ("seed_data", "teacher", "output"):
        if not getattr(opts, name):
            raise InputError(f"missing required option {'--' + name.replace('_', '-')!r}")
    settings = SynthSettings(n=opts.n, thoughts=opts.thoughts, samples=opts.samples, agreement=opts.agreement,
                             temperature=opts.temperature, max_tokens=opts.max_tokens, dedupe_ngram=opts.dedupe_ngram,
                             dedupe_threshold=opts.dedupe_threshold, decontaminate=names(opts.decontaminate),
                             decontam_ngram=opts.decontam_ngram, decontam_threshold=opts.decontam_threshold)
    return synth(opts.seed_data, opts.teacher, opts.output, settings=settings, limit=opts.limit, prompt_file=opts.prompt,
                 concurrency=opts.concurrency, overwrite=opts.overwrite, prices=opts.prices, data_dir=opts.data_dir,
                 teacher_options=backend_options(opts), timeout=opts.check_timeout, workers=opts.workers,
                 show_progress=not opts.no_progress)


def names(values: tuple[str, ...]) -> tuple[str, ...]:
    """A list of names where `none` (alone) is the empty list."""
    return () if [v.lower() for v in values] == ["none"] else values


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


def show(result: SynthResult) -> None:
    console.print(summary(result))
    files = paths(result.out)
    console.print(f"wrote {result.report['accepted']} questions to {result.out}; rejected in {files['rejected']}, "
                  f"votes in {files['solutions']}, report in {files['report']}, ledger in {files['ledger']}")


register_stage(Stage("synth", SynthOptions, run, show,
                     aliases={"thought": "thoughts", "o": "output", 
                              "program_timeout": "check_timeout", "request_timeout": "timeout"}))

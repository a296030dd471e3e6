"""The eval stage: decode with each thought, answer with fallback (and vote), report accuracy."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from distill.evaluation.report import Report
from distill.progress import console
from distill.records import InputError
from distill.stages import Stage, register_stage


@dataclass(frozen=True)
class EvalOptions:
    model: str | None = None
    predictions: tuple[str, ...] = ()  # score these Records JSONL files instead of decoding
    data: str = "gsm8k:test"
    thoughts: tuple[str, ...] = ()  # default: pot,eot,cot (with predictions: those present)
    fallback: tuple[str, ...] = ()
    vote: bool = False
    output: str | None = None
    overwrite: bool = False
    limit: int | None = None
    data_dir: str | None = None
    samples: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    max_new_tokens: int = 256
    max_rounds: int = 4  # tool-integrated thoughts (tir): decoding rounds, cells run between them
    batch_tokens: int | None = None
    max_batch: int = 1024
    expected_new_tokens: float | None = None  # the batch plan's prior (DecodeOptions.expected_new_tokens)
    device: str | None = None
    gpus: int | None = None  # data parallel over this many processes (distill.evaluation.shards)
    engine: str = "auto"
    no_compile: bool = False
    timeout: float = 5.0
    workers: int | None = None


@dataclass
class EvalResult:
    report: Report
    out: Path


def run(opts: EvalOptions) -> EvalResult:
    from distill.evaluation import DecodeOptions, evaluate_model, score_predictions

    if bool(opts.model) == bool(opts.predictions):
        raise InputError("give either --model or --predictions")
    if opts.predictions:
        out = Path(opts.output or "runs/eval/predictions")
        report = score_predictions(list(opts.predictions), out, thoughts=opts.thoughts or None,
                                   fallback=opts.fallback or None, vote=opts.vote, overwrite=opts.overwrite,
                                   timeout=opts.timeout, workers=opts.workers)
        return EvalResult(report, out)
    assert opts.model is not None
    try:
        decode = DecodeOptions(max_new_tokens=opts.max_new_tokens, samples=opts.samples, temperature=opts.temperature,
                               top_p=opts.top_p, seed=opts.seed, token_budget=opts.batch_tokens,
                               max_batch=opts.max_batch, compile=not opts.no_compile, max_rounds=opts.max_rounds,
                               cell_timeout=opts.timeout, cell_workers=opts.workers,
                               expected_new_tokens=opts.expected_new_tokens)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    out = Path(opts.output or Path("runs/eval") / Path(opts.model.replace(":", "_")).name)
    common = dict(thoughts=opts.thoughts or ("pot", "eot", "cot"), fallback=opts.fallback or None, vote=opts.vote,
                  options=decode, limit=opts.limit, data_root=opts.data_dir, overwrite=opts.overwrite,
                  device=opts.device, engine=opts.engine, timeout=opts.timeout, workers=opts.workers)
    if opts.gpus and opts.gpus > 1:
        from distill.evaluation.shards import evaluate_sharded

        report = evaluate_sharded(opts.model, opts.data, out, gpus=opts.gpus, **common)
    else:
        report = evaluate_model(opts.model, opts.data, out, **common)
    return EvalResult(report, out)


def show(result: EvalResult) -> None:
    from distill.evaluation.report import rich_table

    console.print(rich_table(result.report))
    console.print(f"wrote {result.out}/items.jsonl, report.json, report.md and chart.png")


register_stage(Stage("eval", EvalOptions, run, show,
                     aliases={"thought": "thoughts", "o": "output", "program_timeout": "timeout"}))

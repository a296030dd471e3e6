from __future__ import annotations

from pathlib import Path

import click

from distill.progress import console
from distill.records import InputError


@click.command(help="Decode each question once per thought, answer with fallback (and vote), report accuracy.")
@click.option("--model", help="Student dir, local/hub model, or a teacher spec (openai:MODEL, hf:..., vllm:...).")
@click.option("--predictions", "prediction_files", multiple=True,
              help="Score existing generate/eval predictions (Records JSONL) instead of decoding; repeatable or comma-separated.")
@click.option("--data", default="gsm8k:test", show_default=True, help="Comma-separated data sets (gsm8k:test,svamp,asdiv,multiarith, files).")
@click.option("--thoughts", default=None, help="Thoughts to decode, the cue selects each [pot,eot,cot; with --predictions: those present].")
@click.option("--fallback", default=None, help="Fallback order (default: the --thoughts order).")
@click.option("--vote", is_flag=True, help="Also answer by a majority vote across thoughts (ties: fallback order).")
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False), help="Output directory [runs/eval/<model>].")
@click.option("--overwrite", is_flag=True, help="Replace an output directory that holds another config.")
@click.option("--limit", type=int, default=None, help="First N questions of each data set.")
@click.option("--data-dir", default=None, help="Where the publishers' data files live.")
@click.option("--samples", default=1, show_default=True, help="Samples per question and thought (pass@k, maj@k).")
@click.option("--temperature", default=0.0, show_default=True, help="0: greedy.")
@click.option("--top-p", default=1.0, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--max-new-tokens", default=256, show_default=True)
@click.option("--batch-tokens", type=int, default=None, help="KV-cache tokens per batch (default: from free GPU memory).")
@click.option("--max-batch", default=1024, show_default=True, help="Sequences per batch at most.")
@click.option("--device", default=None, help="cuda, cpu, cuda:1 ... (default: cuda when available).")
@click.option("--engine", type=click.Choice(["auto", "hf", "vllm"]), default="auto", show_default=True)
@click.option("--no-compile", is_flag=True, help="Do not compile the decode step (static cache on CUDA).")
@click.option("--timeout", default=5.0, show_default=True, help="Seconds per program/system.")
@click.option("--workers", type=int, default=None, help="Executor processes (default: one per core).")
def command(model: str | None, prediction_files: tuple[str, ...], data: str, thoughts: str | None, fallback: str | None,
            vote: bool, out_dir: str | None, overwrite: bool, limit: int | None, data_dir: str | None, samples: int,
            temperature: float, top_p: float, seed: int, max_new_tokens: int, batch_tokens: int | None,
            max_batch: int, device: str | None, engine: str, no_compile: bool, timeout: float, workers: int | None) -> None:
    from distill.evaluation import DecodeOptions, evaluate_model, score_predictions
    from distill.evaluation.report import rich_table

    if bool(model) == bool(prediction_files):
        raise InputError("give either --model or --predictions")
    if prediction_files:
        paths = [p for spec in prediction_files for p in spec.split(",") if p]
        out = Path(out_dir or "runs/eval/predictions")
        report = score_predictions(paths, out, thoughts=thoughts,
                                   fallback=fallback, vote=vote, overwrite=overwrite, timeout=timeout, workers=workers)
    else:
        assert model is not None
        try:
            options = DecodeOptions(max_new_tokens=max_new_tokens, samples=samples, temperature=temperature, top_p=top_p,
                                    seed=seed, token_budget=batch_tokens, max_batch=max_batch, compile=not no_compile)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        out = Path(out_dir or Path("runs/eval") / Path(model.replace(":", "_")).name)
        report = evaluate_model(model, data, out, thoughts=thoughts or "pot,eot,cot", fallback=fallback, vote=vote, options=options,
                                limit=limit, data_root=data_dir, overwrite=overwrite, device=device, engine=engine,
                                timeout=timeout, workers=workers)
    console.print(rich_table(report))
    console.print(f"wrote {out}/items.jsonl, report.json, report.md and chart.png")

from __future__ import annotations

from typing import Any

import click

from distill.generate import Settings, generate, ledger_path
from distill.progress import console
from distill.records import THOUGHTS, InputError
from distill.teachers.base import is_transient


def _thoughts(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[str]:
    out = [t.strip() for v in values for t in v.split(",") if t.strip()]
    bad = [t for t in out if t not in THOUGHTS]
    if bad:
        raise click.BadParameter(f"{', '.join(bad)} (choose from {', '.join(THOUGHTS)})")
    return list(dict.fromkeys(out))


def _teacher_options(teacher: str, **flags: Any) -> dict[str, Any]:
    """The flags that concern the teacher's backend (the others are left at None)."""
    by_kind = {
        "openai": ("base_url", "api_key", "timeout", "max_retries", "rpm", "tpm", "n_mode"),
        "hf": ("device", "dtype", "batch_size"),
        "vllm": ("batch_size",),
    }
    kind = teacher.partition(":")[0]
    given = {k: v for k, v in flags.items() if v is not None}
    misplaced = [k for k in given if k not in by_kind.get(kind, ())]
    if misplaced:
        names = ", ".join("--" + k.replace("_", "-") for k in misplaced)
        raise InputError(f"{names}: not an option of {kind}: teachers")
    return given


@click.command(help="Prompt a teacher for rationales, validate each against the gold answer, write every attempt. "
                    "Rerunning the same command resumes: answered requests are never sent again.")
@click.option("--thought", "thoughts", multiple=True, required=True, callback=_thoughts,
              help="cot, pot or eot; repeat or comma-separate for several.")
@click.option("--data", required=True, help="Data set spec (gsm8k:train, a .jsonl/.json/.csv path, a hub id).")
@click.option("--limit", type=int, help="Only the first N items.")
@click.option("--shard", help="Only shard i/n of the items (after --limit).")
@click.option("--teacher", required=True, help="openai:MODEL, hf:MODEL (hub id or path), vllm:MODEL or world:.")
@click.option("--samples", default=1, show_default=True, help="Samples per question and thought.")
@click.option("--n-per-request", type=int, help="Samples asked for per request (default: all of them at once).")
@click.option("--max-samples-until-correct", "until_correct", type=int,
              help="Stop sampling a question once this many correct rationales exist (samples are drawn in rounds).")
@click.option("--keep", type=click.Choice(["all", "correct"]), default="all", show_default=True,
              help="Write every attempt, or only the correct ones (the journal keeps all answers either way).")
@click.option("--concurrency", default=16, show_default=True, help="Requests in flight at most.")
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False), help="Output JSONL.")
@click.option("--overwrite", is_flag=True, help="Start afresh: delete OUT and its journal first.")
@click.option("--prompt", "prompt_files", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Own prompt file (YAML like prompts/cot.yaml) for the thought it names; repeatable.")
@click.option("--temperature", default=0.7, show_default=True)
@click.option("--top-p", default=1.0, show_default=True)
@click.option("--max-tokens", default=512, show_default=True)
@click.option("--base-url", help="OpenAI-compatible endpoint (default: $OPENAI_BASE_URL, else OpenAI).")
@click.option("--api-key", help="Default: $OPENAI_API_KEY.")
@click.option("--timeout", type=float, help="openai: seconds per request attempt [120].")
@click.option("--max-retries", type=int, help="openai: retries on 429/5xx/timeouts/resets [6].")
@click.option("--rpm", type=float, help="openai: requests per minute at most.")
@click.option("--tpm", type=float, help="openai: tokens per minute at most (prompt + max tokens x n).")
@click.option("--n-mode", type=click.Choice(["auto", "native", "split"]),
              help="openai: send n in one call (native), one call per sample (split), or detect (auto) [auto].")
@click.option("--device", help="hf: cuda, mps or cpu [the best available].")
@click.option("--dtype", help="hf: torch dtype [auto].")
@click.option("--batch-size", type=int, help="hf/vllm: requests per generate batch [8 / 256].")
@click.option("--prices", type=click.Path(exists=True, dir_okay=False), help="Prices file [prompts/prices.yaml].")
@click.option("--check-timeout", default=5.0, show_default=True, help="Seconds per program/system when validating.")
@click.option("--workers", type=int, help="Executor processes for PoT (default: one per core).")
@click.option("--no-progress", is_flag=True, help="No live progress display.")
def command(thoughts: list[str], data: str, limit: int | None, shard: str | None, teacher: str, samples: int,
            n_per_request: int | None, until_correct: int | None, keep: str, concurrency: int, out: str,
            overwrite: bool, prompt_files: tuple[str, ...], temperature: float, top_p: float, max_tokens: int,
            prices: str | None, check_timeout: float, workers: int | None, no_progress: bool, **backend: Any) -> None:
    options = _teacher_options(teacher, **backend)
    settings = Settings(samples=samples, per_request=n_per_request, until_correct=until_correct,
                        temperature=temperature, top_p=top_p, max_tokens=max_tokens, keep=keep)
    result = generate(data, thoughts, teacher, out, limit=limit, shard=shard, prompt_files=prompt_files,
                      prices=prices, teacher_options=options, settings=settings, concurrency=concurrency,
                      overwrite=overwrite, timeout=check_timeout, workers=workers, show_progress=not no_progress)
    s = result.stats
    total = result.ledger.to_dict()["total"]
    cost = f"${total['cost_usd']:.4f}" if total["cost_usd"] is not None else "cost unknown (no price)"
    console.print(f"wrote {s.written} records to {out} ({s.called} requests sent, {s.resumed} resumed); "
                  f"all runs into this file: {total['prompt_tokens']:,} + {total['completion_tokens']:,} tokens, "
                  f"{cost}; ledger in {ledger_path(out)}")
    if teacher.startswith("world:") and keep == "all":  # the simulated teacher knows which answers it spoiled
        from distill.world.audit import audit
        from distill.world.teacher import WorldTeacher

        found = audit(out, WorldTeacher.from_spec(teacher.partition(":")[2]), settings.rounds()[0], temperature == 0)
        console.print(found.summary())
    if any(is_transient(k) for k in s.failures):
        console.print("some requests failed after every retry; rerun the same command to retry only those")

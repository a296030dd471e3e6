"""The generate stage: prompt a teacher for rationales, validate each, write every attempt."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.generate import Result, Settings, generate, ledger_path
from distill.progress import console
from distill.records import PARTIAL_EXIT, InputError, RunFailed
from distill.stages import Stage, register_stage
from distill.teachers import teacher_audit
from distill.teachers.base import HINTS, is_teacher_failure, is_transient

# Options that go to the teacher's backend (`make_teacher` checks that the backend takes them).
BACKEND = ("base_url", "api_key", "timeout", "max_retries", "rpm", "tpm", "n_mode", "device", "dtype", "batch_size",
           "gpus", "continue_final_message")


@dataclass(frozen=True)
class TeacherOptions:
    """Backend options shared by generate and synth; None leaves the backend's default."""

    base_url: str | None = None
    api_key: str | None = None
    timeout: float | None = None
    max_retries: int | None = None
    rpm: float | None = None
    tpm: float | None = None
    n_mode: str | None = None
    device: str | None = None
    dtype: str | None = None
    batch_size: int | None = None
    gpus: int | None = None
    continue_final_message: bool | None = None


def backend_options(opts: Any) -> dict[str, Any]:
    options = {name: getattr(opts, name) for name in BACKEND if getattr(opts, name) is not None}
    if opts.base_url:  # an openai: teacher shares the run's concurrency out over the servers it names
        options["concurrency"] = opts.concurrency
    return options


@dataclass(frozen=True)
class GenerateOptions(TeacherOptions):
    thoughts: tuple[str, ...] = ()
    data: str = ""
    teacher: str = ""
    output: str = ""
    limit: int | None = None
    shard: str | None = None
    samples: int = 1
    n_per_request: int | None = None
    max_samples_until_correct: int | None = None
    keep: str = "all"
    concurrency: int = 16
    overwrite: bool = False
    prompt: tuple[str, ...] = ()
    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 512
    prices: str | None = None
    check_timeout: float = 5.0
    workers: int | None = None
    no_progress: bool = False
    logprobs: int = 0  # keep the teacher's top-k log-probs per generated token (for `train --objective kd`)
    max_rounds: int = 6  # tir: teacher rounds per trace at most (a code cell runs between two)


REQUIRED = ("thoughts", "data", "teacher", "output")


def run(opts: GenerateOptions) -> Result:
    for name in REQUIRED:
        if not getattr(opts, name):
            raise InputError(f"missing required option {'--' + name.replace('_', '-')!r}")
    settings = Settings(samples=opts.samples, per_request=opts.n_per_request, until_correct=opts.max_samples_until_correct,
                        temperature=opts.temperature, top_p=opts.top_p, max_tokens=opts.max_tokens, keep=opts.keep,
                        logprobs=opts.logprobs, max_rounds=opts.max_rounds)
    result = generate(opts.data, opts.thoughts, opts.teacher, opts.output, limit=opts.limit, shard=opts.shard,
                      prompt_files=opts.prompt, prices=opts.prices, teacher_options=backend_options(opts),
                      settings=settings, concurrency=opts.concurrency, overwrite=opts.overwrite,
                      timeout=opts.check_timeout, workers=opts.workers, show_progress=not opts.no_progress)
    s = result.stats
    failed = {k: n for k, n in s.failures.items() if is_teacher_failure(k)}
    total = sum(s.samples.values())
    if total and sum(failed.values()) == total:
        top = max(failed, key=failed.__getitem__)
        raise RunFailed(f"every request to {opts.teacher} failed ({', '.join(f'{k}: {n}' for k, n in failed.items())}): "
                        f"{HINTS.get(top, top)}; nothing was kept, and a rerun retries them")
    result.failed = sum(failed.values())
    if opts.keep == "all":
        result.audit = teacher_audit(opts.teacher, Path(opts.output), settings.rounds()[0], opts.temperature == 0)
    return result


def exit_code(result: Result) -> int:
    """0, or PARTIAL_EXIT when some samples got no answer from the teacher (unreachable, refused, ...)."""
    return PARTIAL_EXIT if result.failed else 0


def show(result: Result) -> None:
    s = result.stats
    total = result.ledger.to_dict()["total"]
    cost = f"${total['cost_usd']:.4f}" if total["cost_usd"] is not None else "cost unknown (no price)"
    console.print(f"wrote {s.written} record{'s' if s.written != 1 else ''} to {result.out} ({s.called} requests sent, "
                  f"{s.resumed} resumed); all runs into this file: {total['prompt_tokens']:,} + "
                  f"{total['completion_tokens']:,} tokens, {cost}; ledger in {ledger_path(result.out)}")
    if result.audit:
        console.print(result.audit)
    if result.skipped:
        first = result.skipped[0]
        console.print(f"skipped {len(result.skipped)} item{'s' if len(result.skipped) != 1 else ''} whose gold answer "
                      f"cannot be used (first: {first.id}: {first.reason})")
    if result.failed:
        failed = {k: n for k, n in s.failures.items() if is_teacher_failure(k)}
        console.print(f"[yellow]{result.failed} of {sum(s.samples.values())} samples got no answer from the "
                      f"teacher[/] ({', '.join(f'{k}: {n}' for k, n in failed.items())})"
                      + ("; rerun the same command to retry only those" if any(map(is_transient, failed)) else ""))


register_stage(Stage("generate", GenerateOptions, run, show,
                     aliases={"thought": "thoughts", "o": "output", 
                              "program_timeout": "check_timeout", "request_timeout": "timeout"}))

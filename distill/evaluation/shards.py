"""Data-parallel `distill eval --gpus N`: every data set's questions split into N shards (every N-th
question), one process per device, each loading its own decoder (with its own static-cache loop),
evaluating its shard into `OUT/shards/I/`; then the shards' predictions are merged into `OUT` exactly as
one process would have written them (same config, so a later single-device run resumes from them).

A killed run resumes shard by shard. Processes are spawned (CUDA cannot be forked); each sees only
its own GPU (`CUDA_VISIBLE_DEVICES`), so the HF decoder and vLLM alike take "the" GPU. With
`device="cpu"` the N processes share the CPU cores (tests, and machines without GPUs).
"""
from __future__ import annotations

import json
import multiprocessing
import os
import traceback
from pathlib import Path
from typing import Any

from distill.evaluation import (
    CONFIG,
    PREDICTIONS,
    _prepare_dir,
    fallback_order,
    finish,
    load_questions,
    read_predictions,
)
from distill.evaluation.report import Report
from distill.records import InputError, Record, write_jsonl
from distill.thoughts import parse_thoughts

SHARDS = "shards"


def shard_devices(n: int, device: str | None) -> list[str]:
    """Where each of the `n` shards runs: GPU i (as the process's only visible GPU), or the CPU."""
    if n < 1:
        raise InputError(f"--gpus must be at least 1, got {n}")
    if device is not None and device.startswith("cpu"):
        return ["cpu"] * n
    if device is not None:
        raise InputError(f"--gpus {n} places one process on each GPU; --device {device} would put them all on one")
    import torch

    have = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if have < n:
        raise InputError(f"--gpus {n}: {have} CUDA device(s) here (--device cpu runs the {n} processes on the CPU)")
    return [str(i) for i in range(n)]


def _run_shard(where: str, cores: int, kwargs: dict[str, Any], results: Any) -> None:
    """(In a spawned process.) One shard; reports "ok" or the error on `results`."""
    try:
        if where == "cpu":
            import torch

            torch.set_num_threads(cores)
            kwargs["device"] = "cpu"
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = where  # before CUDA starts in this process
            kwargs["device"] = "cuda"
        from distill.evaluation import evaluate_model

        evaluate_model(**kwargs, show_progress=False)
        results.put((kwargs["shard"], None))
    except InputError as exc:
        results.put((kwargs["shard"], str(exc)))
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises
        results.put((kwargs["shard"], traceback.format_exc(limit=8)))


def _check_output(out: Path, overwrite: bool) -> None:
    """Before any decoding: OUT is new, an evaluation directory, or an earlier sharded run of it."""
    if out.exists() and any(out.iterdir()) and not overwrite and not (out / CONFIG).exists() \
            and not (out / SHARDS).is_dir():
        raise InputError("exists and is not an evaluation directory; pass --overwrite or choose another", out)


def evaluate_sharded(model: str, data: str, out_dir: str | os.PathLike, *, gpus: int, thoughts: Any = "pot,eot,cot",
                     fallback: Any = None, vote: bool = False, device: str | None = None,
                     limit: int | None = None, data_root: str | None = None, overwrite: bool = False,
                     workers: int | None = None, **options: Any) -> Report:
    """`evaluate_model` over `gpus` processes (keyword `options` are its own: options, engine, timeout, ...)."""
    out = Path(out_dir)
    places = shard_devices(gpus, device)
    _check_output(out, overwrite)
    thought_list = parse_thoughts(thoughts)
    order = fallback_order(thought_list, fallback)
    questions = load_questions(data, limit=limit, data_root=data_root)  # checks the specs before spawning
    cores = max(1, len(os.sched_getaffinity(0)) // gpus)
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    procs = []
    for i, where in enumerate(places):
        kwargs = dict(model=model, data=data, out_dir=str(out / SHARDS / str(i)), thoughts=thought_list,
                      fallback=order, vote=vote, limit=limit, data_root=data_root, overwrite=overwrite,
                      workers=workers or cores, shard=f"{i}/{gpus}", **options)
        procs.append(context.Process(target=_run_shard, args=(where, cores, kwargs, results), daemon=True))
    for proc in procs:
        proc.start()
    try:
        for proc in procs:
            proc.join()
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
                proc.join()
    reports = _drain(results, len(procs))
    for i, proc in enumerate(procs):
        shard = f"{i}/{gpus}"
        if shard not in reports:
            raise InputError(f"shard {shard} of the evaluation died (exit code {proc.exitcode})")
        if reports[shard]:
            raise InputError(f"shard {shard} of the evaluation failed: {reports[shard].strip().splitlines()[-1]}")
    return merge(out, questions, gpus, thought_list, order, vote, overwrite)


def _drain(results: Any, n: int) -> dict[str, str | None]:
    """What the finished processes reported (a process killed from outside reports nothing)."""
    import queue

    got: dict[str, str | None] = {}
    for _ in range(n):
        try:
            shard, error = results.get(timeout=1)
        except queue.Empty:
            break
        got[shard] = error
    return got


def merge(out: Path, questions: list[Record], gpus: int, thoughts: list[str], order: list[str], vote: bool,
          overwrite: bool) -> Report:
    """The shards' predictions as one evaluation in `out`: question order, then thought, then sample."""
    configs = [json.loads((out / SHARDS / str(i) / CONFIG).read_text()) for i in range(gpus)]
    config = {k: v for k, v in configs[0].items() if k != "shard"}
    position = {(q.source, q.id): n for n, q in enumerate(questions)}
    records = [r for i in range(gpus) for r in read_predictions(out / SHARDS / str(i) / PREDICTIONS)
               if (r.source, r.id) in position]
    records.sort(key=lambda r: (position[r.source, r.id], thoughts.index(r.thought) if r.thought in thoughts else 0,
                                r.sample))
    if (out / CONFIG).exists():  # an earlier evaluation in OUT: the same config, or overwrite
        _prepare_dir(out, config, overwrite)
    else:  # OUT holds only the shards (checked before they ran)
        (out / CONFIG).write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    write_jsonl(out / PREDICTIONS, (r.to_dict() for r in records))
    return finish(records, out, thoughts, order, vote, config)

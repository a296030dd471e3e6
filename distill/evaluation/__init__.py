"""`distill eval` as a library: decode each question once per thought, check, combine, report.

Output directory:
- `config.json`: what decides the predictions (model, data, thoughts, decoding); a rerun with the
  same config resumes, a different one needs `overwrite=True`.
- `predictions.jsonl`: one `Record` per (question, thought, sample), appended and flushed batch by
  batch: the resumable stream, in the schema `distill generate` writes, so either can be rescored.
- `items.jsonl`: one row per (question, sample): each thought's rationale, prediction, status and
  correctness, the fallback and vote answers (with the thought they came from) and the oracle.
- `report.json`, `report.md`, `chart.png`.
Fallback order and voting do not change the predictions: rescoring with another order needs no decoding.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from distill.checking import Checker
from distill.data import load
from distill.evaluation.backends import DecodeOptions, open_decoder, rationale_extractor
from distill.evaluation.plan import Batch
from distill.evaluation.report import Report, write_reports
from distill.evaluation.scoring import build_items, methods, summarize
from distill.evaluation.tools import Trace
from distill.progress import console, progress_bar
from distill.records import InputError, Record, carried_meta, cut_torn_line, dumps, read_records, write_jsonl
from distill.thoughts import get_thought, parse_thoughts, thought_names

PREDICTIONS = "predictions.jsonl"
CONFIG = "config.json"
OUTPUTS = (PREDICTIONS, CONFIG, "items.jsonl", "report.json", "report.md", "chart.png")


class Decoder(Protocol):
    prompting: dict[str, Any]  # what decides the prompts (cues, few-shot prompt hashes): part of the config

    def prompt(self, question: str, thought: str) -> Any: ...
    def plan(self, prompts: Sequence[Any]) -> list[Batch]: ...
    def decode(self, prompts: Sequence[Any], batches: Sequence[Batch] | None = None) -> Iterable[tuple[list[int], list[list[str | Trace]]]]: ...


def split_list(value: str | Sequence[str], *, allowed: Sequence[str] | None = None, what: str = "value") -> list[str]:
    """`a,b,c` (or a list) -> ["a", "b", "c"], checked against `allowed`, without repeats."""
    items = [p.strip() for p in (value.split(",") if isinstance(value, str) else value) if p.strip()]
    for item in items:
        if allowed is not None and item not in allowed:
            raise InputError(f"unknown {what} {item!r} (choose from {', '.join(allowed)})")
    if len(set(items)) != len(items) or not items:
        raise InputError(f"{what}s must be a non-empty list without repeats, got {value!r}")
    return items


def fallback_order(thoughts: Sequence[str], fallback: str | Sequence[str] | None) -> list[str]:
    """The fallback order: the given one (thoughts being evaluated) or the thoughts' own order."""
    order = list(thoughts) if not fallback else parse_thoughts(fallback)
    missing = [t for t in order if t not in thoughts]
    if missing:
        raise InputError(f"--fallback names {', '.join(missing)}, which --thoughts does not evaluate")
    return order


def load_questions(data: str | Sequence[str], *, limit: int | None = None, data_root: str | None = None,
                   shard: str | None = None) -> list[Record]:
    """The questions of every data set (`shard` i/n: every n-th of each, after `limit`)."""
    records: list[Record] = []
    for spec in split_list(data, what="data set"):
        records += load(spec, limit=limit, shard=shard, data_root=data_root).records
    return records


def _prepare_dir(out_dir: Path, config: dict[str, Any], overwrite: bool) -> None:
    """Resume when the directory holds the same config; refuse to mix configs unless overwriting."""
    path = out_dir / CONFIG
    if path.exists():
        if json.loads(path.read_text()) != config:
            if not overwrite:
                raise InputError("holds an evaluation with another config; pass --overwrite to replace it", out_dir)
            for name in OUTPUTS:
                (out_dir / name).unlink(missing_ok=True)
    elif out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise InputError("exists and is not an evaluation directory; pass --overwrite or choose another", out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


def read_predictions(path: Path, *, repair: bool = False) -> list[Record]:
    """Records of a predictions file; with `repair` (our own file, after a killed run) a torn last line is cut off."""
    if not path.exists():
        return []
    if repair:
        cut_torn_line(path)
    return read_records(path)


def decode_and_check(
    decoder: Decoder,
    prompts: list[Any],
    units: list[tuple[Record, str]],
    *,
    model_name: str,
    samples: int,
    sink: Callable[[list[Record]], None],
    make_checker: Callable[[str], Checker],
    show_progress: bool = True,
) -> None:
    """Decode `prompts` (one per (question, thought) unit), check each rationale with its thought's
    checker and hand the records of each batch to `sink`. Checking a batch overlaps decoding the next."""
    thoughts = sorted({t for _, t in units})
    checkers = {t: make_checker(t) for t in thoughts}
    extract = rationale_extractor()

    def check(indices: list[int], texts: list[list[str | Trace]]) -> int:
        out: list[Record] = []
        by_thought: dict[str, list[Record]] = {}
        for i, samples_text in zip(indices, texts):
            question, thought = units[i]
            for s, raw in enumerate(samples_text):
                meta = carried_meta(question)
                if isinstance(raw, Trace):  # a tool-integrated sample keeps its rounds
                    raw, meta["turns"] = raw.text, raw.turns
                r = Record(id=question.id, question=question.question, answer=question.answer, source=question.source,
                           thought=thought, rationale=extract(thought, raw), model=model_name, sample=s, meta=meta)
                out.append(r)
                by_thought.setdefault(thought, []).append(r)
        for thought, records in by_thought.items():
            checkers[thought].fill(records)
        sink(out)
        return len(indices)

    pending: Future[int] | None = None
    if show_progress:
        console.print(f"decoding {len(prompts)} prompts ({', '.join(thoughts)}); the first batch also builds the "
                      "decode step (compiling and capturing graphs on CUDA can take a minute)")
    try:
        with ThreadPoolExecutor(max_workers=1) as pool, progress_bar("decoding", len(prompts), enabled=show_progress) as advance:
            for indices, texts in decoder.decode(prompts):
                if pending is not None:
                    advance(pending.result())
                pending = pool.submit(check, indices, texts)
            if pending is not None:
                advance(pending.result())
    finally:
        for checker in checkers.values():
            checker.close()


def evaluate_model(
    model: str,
    data: str | Sequence[str],
    out_dir: str | os.PathLike,
    *,
    thoughts: str | Sequence[str] = "pot,eot,cot",
    fallback: str | Sequence[str] | None = None,
    vote: bool = False,
    options: DecodeOptions | None = None,
    limit: int | None = None,
    data_root: str | None = None,
    overwrite: bool = False,
    device: str | None = None,
    engine: str = "auto",
    decoder: Decoder | None = None,
    timeout: float = 5.0,
    workers: int | None = None,
    make_checker: Callable[[str], Checker] | None = None,
    show_progress: bool = True,
    shard: str | None = None,
) -> Report:
    """Evaluate `model` on the data sets and write the outputs (see the module docstring).

    `decoder` replaces loading `model` (benchmarks pass an in-memory model this way);
    `make_checker(thought)` replaces the project's checkers (tests script them); `timeout` and `workers`
    also bound the cells that tool-integrated samples run while decoding; `shard` i/n
    evaluates every n-th question of each set (`distill.evaluation.shards` runs the n of them)."""
    options = options or DecodeOptions(cell_timeout=timeout, cell_workers=workers)
    thought_list = parse_thoughts(thoughts)
    order = fallback_order(thought_list, fallback)
    questions = load_questions(data, limit=limit, data_root=data_root, shard=shard)
    out = Path(out_dir)
    if decoder is None:
        if show_progress:
            console.print(f"loading {model} ...")
        decoder = open_decoder(model, options, device=device, engine=engine)
    config = {"model": model, "data": split_list(data, what="data set"), "limit": limit, "thoughts": thought_list,
              "prompting": decoder.prompting, "samples": options.samples, "temperature": options.temperature,
              "top_p": options.top_p, "seed": options.seed, "max_new_tokens": options.max_new_tokens}
    if any(get_thought(t).tools for t in thought_list):
        config["max_rounds"] = options.max_rounds
    if shard:
        config["shard"] = shard
    _prepare_dir(out, config, overwrite)
    done = {(r.source, r.id, r.thought) for r in read_predictions(out / PREDICTIONS, repair=True) if r.sample == options.samples - 1}
    units = [(q, t) for q in questions for t in thought_list if (q.source, q.id, t) not in done]
    prompts = [decoder.prompt(q.question, t) for q, t in units]
    if units:
        with open(out / PREDICTIONS, "a", encoding="utf-8") as fh:
            def sink(records: list[Record]) -> None:
                fh.write("".join(dumps(r.to_dict()) + "\n" for r in records))
                fh.flush()

            decode_and_check(decoder, prompts, units, model_name=model, samples=options.samples, sink=sink,
                             make_checker=make_checker or (lambda t: Checker(t, timeout=timeout, workers=workers)),
                             show_progress=show_progress)
    wanted = {(q.source, q.id) for q in questions}
    records = [r for r in read_predictions(out / PREDICTIONS) if (r.source, r.id) in wanted]
    report = finish(records, out, thought_list, order, vote, config)
    _update_student_card(Path(model), report)
    return report


def _update_student_card(student: Path, report: Report) -> None:
    """A trained student's model card gains (or renews) its evaluation table."""
    from distill.train.card import EVAL_FILE, write_model_card
    from distill.train.checkpoint import CONFIG_FILE

    if (student / CONFIG_FILE).is_file() and (student / "README.md").is_file():
        (student / EVAL_FILE).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        write_model_card(student)


def score_predictions(
    paths: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    thoughts: str | Sequence[str] | None = None,
    fallback: str | Sequence[str] | None = None,
    vote: bool = False,
    overwrite: bool = False,
    timeout: float = 5.0,
    workers: int | None = None,
) -> Report:
    """Score existing `Record`s (`distill generate` or `distill eval` predictions) without decoding.
    Records that carry no status yet are checked first; thoughts default to those present."""
    records: list[Record] = []
    for path in paths:
        if not Path(path).is_file():
            raise InputError("no such file", path)
        records += read_predictions(Path(path))
    present = [t for t in thought_names() if any(r.thought == t for r in records)]
    thought_list = parse_thoughts(thoughts, default=present)
    if not thought_list:
        raise InputError("no records with a thought (cot, pot, eot) to score", paths[0] if paths else None)
    for thought in thought_list:
        unchecked = [r for r in records if r.thought == thought and r.status is None]
        if unchecked:
            with Checker(thought, timeout=timeout, workers=workers) as checker:
                checker.fill(unchecked)
    out = Path(out_dir)
    config = {"model": ", ".join(sorted({r.model or "?" for r in records})), "predictions": [str(p) for p in paths],
              "samples": 1 + max((r.sample for r in records), default=0)}
    _prepare_dir(out, config, overwrite)
    return finish(records, out, thought_list, fallback_order(thought_list, fallback), vote, config)


def finish(records: list[Record], out: Path, thoughts: list[str], order: list[str], vote: bool,
           config: dict[str, Any]) -> Report:
    """Combine, score and write items.jsonl and the reports."""
    items = build_items(records, thoughts, order, vote)
    write_jsonl(out / "items.jsonl", (it.to_dict() for it in items))
    report: Report = {"config": config, "thoughts": thoughts, "fallback": order, "vote": vote,
                      "methods": methods(thoughts, vote), "datasets": summarize(items, thoughts, vote)}
    write_reports(report, out)
    return report


__all__ = ["DecodeOptions", "evaluate_model", "score_predictions", "open_decoder"]

"""`distill mix`: turn validated rationales of any thoughts into a Mix-Thoughts (MTD) data set.

Each example is one rationale: its source is the question plus the student cue of its thought
(`cues.student_input`), its target the rationale. Filters run in this order, and each dropped
rationale is counted once, under the first reason that applies:

    thought not selected -> empty rationale -> wrong answer / unchecked -> contaminated
    -> duplicate (exact / normalised) -> source / target too long -> over --per-question -> balance

Then questions (never rationales) are split into train and validation, so that no question is in
both. Everything random draws from `random.Random` seeded with `--seed`, and every file is written
from sorted or input-ordered data, so a rebuild gives byte-identical files.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shlex
import shutil
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

from distill import __version__
from distill.cues import load_cues, student_input
from distill.decontam import DEFAULT_EVAL_SETS, NGRAM, THRESHOLD, EvalIndex, Hit, default_eval_sets
from distill.dedupe import Deduper
from distill.logprobs import KD_COLUMNS, META_KEY, TopK
from distill.markdown import md_table
from distill.records import InputError, Record, dumps, iter_jsonl, write_jsonl
from distill.thoughts import parse_thoughts, thought_names
from solvers.answers import is_correct, to_number
from solvers.mathans import equivalent

SPLITS = ("train", "validation")
# Fields that make a line a `distill generate` output rather than a plain question set.
REQUIRED = ("id", "question", "answer", "thought", "rationale", "correct")
# Drop reasons, in the order the filters run.
REASONS = ("thought not selected", "empty rationale", "wrong answer", "unchecked", "contaminated", "duplicate (exact)",
           "duplicate (normalised)", "source too long", "target too long", "over --per-question", "balance")
# The columns `distill train` reads, in this order.
COLUMNS = ("id", "question_id", "question", "answer", "thought", "input", "target", "teacher")

Row = dict[str, Any]


@dataclass(frozen=True)
class MixOptions:
    """Everything that decides the content of a mix. Field names are the CLI option names."""

    thoughts: tuple[str, ...] = ()  # () : every registered thought
    student_cues: str = "etd"  # cue set name in the cues file
    cues_file: str | None = None  # default: prompts/cues.yaml
    keep_incorrect: bool = False  # also keep rationales whose answer is wrong or unchecked
    per_question: int | None = None  # cap on rationales per question and thought
    balance: bool = False  # downsample every thought to the count of the rarest
    val_fraction: float = 0.05  # share of questions in validation
    seed: int = 0
    decontaminate: tuple[str, ...] = DEFAULT_EVAL_SETS  # evaluation sets; () turns it off
    decontam_ngram: int = NGRAM
    decontam_threshold: float = THRESHOLD
    data_dir: str | None = None  # where the evaluation sets are read from (see data.data_dir)
    tokenizer: str | None = None  # student tokenizer (hub name or local dir): enables the length filter
    max_source_tokens: int = 256
    max_target_tokens: int = 256

    def check(self) -> None:
        parse_thoughts(self.thoughts)
        if not 0 <= self.val_fraction < 1:
            raise InputError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if self.per_question is not None and self.per_question < 1:
            raise InputError(f"--per-question must be at least 1, got {self.per_question}")
        if self.max_source_tokens < 1 or self.max_target_tokens < 1:
            raise InputError("--max-source-tokens and --max-target-tokens must be positive")

    def command_line(self, inputs: Sequence[str], output: str) -> str:
        """The `distill mix` invocation that rebuilds this mix (every option spelt out)."""
        args = ["distill", "mix", *inputs, "-o", output]
        for f in fields(self):
            value = getattr(self, f.name)
            flag = "--" + f.name.replace("_", "-")
            if isinstance(value, bool):
                args += [flag] if value else []
            elif isinstance(value, tuple):
                args += [flag, ",".join(value) or "none"]
            elif value is not None:
                args += [flag, str(value)]
        return shlex.join(args)


@dataclass
class Example:
    """One rationale on its way through the filters."""

    rec: Record
    key: str  # the whitespace-normalised question: the unit of splitting, capping and deduplication
    input: str = ""
    target: str = ""


@dataclass
class MixResult:
    output: Path
    counts: dict[str, Any]  # as written to mix.json: in / dropped / kept / splits / questions
    flagged: list[dict[str, Any]] = field(default_factory=list)  # decontaminated questions


def question_key(question: str) -> str:
    return " ".join(question.split())


# ---------------------------------------------------------------- reading
def read_generated(paths: Sequence[str | os.PathLike]) -> list[Example]:
    """The records of `distill generate` outputs, checked: required fields, a known thought, and
    one gold answer per question (across ids and files)."""
    examples: list[Example] = []
    # question id / question text -> (gold, question text, where first seen)
    by_id: dict[str, tuple[Any, str, str]] = {}
    by_key: dict[str, tuple[Any, str]] = {}
    for path in paths:
        for lineno, obj in iter_jsonl(path):
            missing = [name for name in REQUIRED if name not in obj]
            if missing:
                raise InputError(
                    f"not a `distill generate` output: missing {', '.join(map(repr, missing))} "
                    "(a JSONL of the records `distill generate` writes)", path, lineno
                )
            rec = Record.from_dict(obj)
            if rec.thought not in thought_names():
                raise InputError(f"field 'thought' must be one of {', '.join(thought_names())}, got {rec.thought!r}",
                                 path, lineno)
            if not isinstance(rec.rationale, str):
                raise InputError("field 'rationale' must be a string", path, lineno)
            if rec.answer is not None and (isinstance(rec.answer, bool) or
                                           (to_number(rec.answer) is None and not isinstance(rec.answer, str))):
                raise InputError(f"field 'answer' must be the gold number, a LaTeX string or null, got {rec.answer!r}",
                                 path, lineno)
            if rec.correct not in (True, False, None):
                raise InputError(f"field 'correct' must be true, false or null, got {rec.correct!r}", path, lineno)
            key, where = question_key(rec.question), f"{path}:{lineno}"
            gold, question, first = by_id.setdefault(rec.id, (rec.answer, key, where))
            if question != key:
                raise InputError(f"question id {rec.id!r} names a different question at {first}", path, lineno)
            _same_gold(rec.answer, gold, f"question {rec.id!r}", first, path, lineno)
            gold, first = by_key.setdefault(key, (rec.answer, where))
            _same_gold(rec.answer, gold, f"question {rec.id!r} ({key[:40]!r}...)", first, path, lineno)
            examples.append(Example(rec, key))
    return examples


def _same_gold(a: Any, b: Any, what: str, first: str, path: str | os.PathLike, lineno: int) -> None:
    if a is None or b is None or a == b:
        return
    latex = isinstance(a, str) or isinstance(b, str)  # LaTeX golds (MATH): equal mathematically
    if equivalent(a, b) if latex else is_correct(a, b):
        return
    raise InputError(f"conflicting gold answers for {what}: {a} here, {b} at {first}", path, lineno)


# ---------------------------------------------------------------- filters
class Tally:
    """Rationale counts per (reason, thought): `in`, each drop reason, `kept`."""

    def __init__(self) -> None:
        self.counts: dict[str, Counter[str]] = defaultdict(Counter)

    def add(self, reason: str, examples: Sequence[Example]) -> None:
        self.counts[reason].update(ex.rec.thought for ex in examples)

    def drop(self, examples: list[Example], reasons: Sequence[str | None]) -> list[Example]:
        """The examples whose reason is None; the others are counted under their reason."""
        kept = []
        for ex, reason in zip(examples, reasons, strict=True):
            if reason is None:
                kept.append(ex)
            else:
                self.counts[reason][ex.rec.thought] += 1
        return kept

    def keep_if(self, examples: list[Example], reason_of: Callable[[Example], str | None]) -> list[Example]:
        return self.drop(examples, [reason_of(ex) for ex in examples])


def _verdict(ex: Example, opts: MixOptions) -> str | None:
    if ex.rec.thought not in opts.thoughts:
        return "thought not selected"
    if not ex.target:
        return "empty rationale"
    if opts.keep_incorrect or ex.rec.correct is True:
        return None
    return "unchecked" if ex.rec.correct is None else "wrong answer"


def _length_filter(examples: list[Example], tokenizer: Any, opts: MixOptions, tally: Tally) -> list[Example]:
    if not examples:
        return examples

    def lengths(texts: list[str]) -> list[int]:
        return [len(ids) for ids in tokenizer(texts, add_special_tokens=True, verbose=False)["input_ids"]]

    src, tgt = lengths([ex.input for ex in examples]), lengths([ex.target for ex in examples])
    reasons = [
        "source too long" if s > opts.max_source_tokens else "target too long" if t > opts.max_target_tokens else None
        for s, t in zip(src, tgt)
    ]
    return tally.drop(examples, reasons)


def _cap(examples: list[Example], k: int, tally: Tally) -> list[Example]:
    """At most k rationales per question and thought: the lowest sample indices (input order on ties)."""
    reasons: list[str | None] = ["over --per-question"] * len(examples)
    seen: Counter[tuple[str, str]] = Counter()
    for i in sorted(range(len(examples)), key=lambda i: (examples[i].rec.sample, i)):
        scope = (examples[i].key, examples[i].rec.thought)
        seen[scope] += 1
        if seen[scope] <= k:
            reasons[i] = None
    return tally.drop(examples, reasons)


def _balance(examples: list[Example], seed: int, tally: Tally) -> list[Example]:
    """Downsample each thought, at random, to the count of the rarest thought present."""
    by_thought: dict[str, list[int]] = defaultdict(list)
    for i, ex in enumerate(examples):
        by_thought[ex.rec.thought].append(i)
    if not by_thought:
        return examples
    n = min(len(ix) for ix in by_thought.values())
    rng = random.Random(f"{seed}:balance")
    reasons: list[str | None] = ["balance"] * len(examples)
    for thought in sorted(by_thought):
        for i in rng.sample(by_thought[thought], n):
            reasons[i] = None
    return tally.drop(examples, reasons)


def split_questions(keys: Sequence[str], val_fraction: float, seed: int) -> set[str]:
    """The questions (keys) that go to validation: a seeded draw of round(fraction * n), at least
    one when the fraction is positive and there are two questions or more."""
    unique = sorted(set(keys))
    n_val = round(val_fraction * len(unique))
    if val_fraction > 0 and n_val == 0 and len(unique) > 1:
        n_val = 1
    random.Random(f"{seed}:split").shuffle(unique)
    return set(unique[:n_val])


# ---------------------------------------------------------------- the mix
def mix(
    inputs: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    *,
    overwrite: bool = False,
    tokenizer: Any = None,
    push_to_hub: str | None = None,
    **options: Any,
) -> MixResult:
    """Build an MTD data set from `distill generate` outputs and write it to the directory `output`.

    `options` are the fields of `MixOptions` (e.g. `thoughts=("cot", "pot")`, `per_question=4`).
    `tokenizer` may be a tokenizer object instead of `options["tokenizer"]` (a name or path).
    Writes the DatasetDict (`load_from_disk`), train.jsonl / validation.jsonl, README.md (the data
    set card) and mix.json; never replaces an existing directory unless it is an earlier mix and
    `overwrite` is set. Raises InputError on bad input.
    """
    if not inputs:
        raise InputError("no input files")
    opts = MixOptions(**{k: tuple(v) if isinstance(v, list) else v for k, v in options.items()})
    opts.check()
    opts = _replace(opts, thoughts=tuple(parse_thoughts(opts.thoughts, default=thought_names())))
    out = Path(output)
    _check_output(out, overwrite)
    cues = load_cues(opts.student_cues, opts.cues_file)
    if tokenizer is None and opts.tokenizer:
        from transformers import AutoTokenizer  # heavy: only when the length filter is on

        tokenizer = AutoTokenizer.from_pretrained(opts.tokenizer)
    if tokenizer is not None and not opts.tokenizer:
        opts = _replace(opts, tokenizer=getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)

    examples = read_generated(inputs)
    if opts.decontaminate == DEFAULT_EVAL_SETS:  # MATH data is also checked against math:test and math500
        opts = _replace(opts, decontaminate=default_eval_sets(ex.rec.source for ex in examples))
    tally = Tally()
    tally.add("in", examples)
    for ex in examples:
        ex.target = (ex.rec.rationale or "").strip()
    examples = tally.keep_if(examples, lambda ex: _verdict(ex, opts))

    flagged: list[dict[str, Any]] = []
    if opts.decontaminate:
        examples, flagged = _decontaminate(examples, opts, tally)
    deduper = Deduper()
    examples = tally.keep_if(examples, lambda ex: _duplicate_reason(deduper, ex))
    for ex in examples:
        ex.input = student_input(ex.rec.question, ex.rec.thought, cues)
    if tokenizer is not None:
        examples = _length_filter(examples, tokenizer, opts, tally)
    if opts.per_question is not None:
        examples = _cap(examples, opts.per_question, tally)
    if opts.balance:
        examples = _balance(examples, opts.seed, tally)
    tally.add("kept", examples)
    if not examples:
        n_in = sum(tally.counts["in"].values())
        why = ", ".join(f"{reason}: {sum(per.values())}" for reason, per in tally.counts.items()
                        if reason not in ("in", "kept") and sum(per.values()))
        what = f"all {n_in} rationales were dropped ({why})" if n_in else "the inputs hold no rationales"
        raise InputError(f"nothing to mix: {what}; nothing written", inputs[0])

    val_keys = split_questions([ex.key for ex in examples], opts.val_fraction, opts.seed)
    splits: dict[str, list[Row]] = {split: [] for split in SPLITS}
    for row in _rows(examples):
        splits["validation" if question_key(row["question"]) in val_keys else "train"].append(row)

    counts = _counts(tally, splits)
    meta = _meta(inputs, out, opts, cues, examples, counts, flagged)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        dataset = _write(tmp, splits, meta)
        _publish(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if push_to_hub:
        _push(out, dataset, push_to_hub)
    return MixResult(out, counts, flagged)


def _decontaminate(examples: list[Example], opts: MixOptions, tally: Tally) -> tuple[list[Example], list[dict[str, Any]]]:
    """Drop every rationale of a question that overlaps an evaluation question; report the questions."""
    index = EvalIndex.load(opts.decontaminate, n=opts.decontam_ngram, threshold=opts.decontam_threshold,
                           data_root=opts.data_dir)
    first: dict[str, Example] = {}  # each question's first example, in input order
    for ex in examples:
        first.setdefault(ex.key, ex)
    hits: dict[str, Hit | None] = {key: index.match(key) for key in first}
    dropped = Counter(ex.key for ex in examples if hits[ex.key])
    flagged = [
        {"question_id": ex.rec.id, "question": ex.rec.question, "eval_id": hit.eval_id,
         "eval_question": hit.eval_question, "score": round(hit.score, 4), "rationales": dropped[key]}
        for key, ex in first.items()
        if (hit := hits[key])
    ]
    return tally.keep_if(examples, lambda ex: "contaminated" if hits[ex.key] else None), flagged


def _replace(opts: MixOptions, **changes: Any) -> MixOptions:
    return MixOptions(**{**asdict(opts), **changes})


def _duplicate_reason(deduper: Deduper, ex: Example) -> str | None:
    kind = deduper.check((ex.key, ex.rec.thought), ex.target)
    return None if kind is None else f"duplicate ({kind})"


def _rows(examples: list[Example]) -> list[Row]:
    """Output rows in a stable order: questions by first appearance, then thought, then input order."""
    first: dict[str, int] = {}
    for ex in examples:
        first.setdefault(ex.key, len(first))
    ordered = sorted(examples, key=lambda ex: (first[ex.key], thought_names().index(ex.rec.thought)))  # stable
    numbered: Counter[tuple[str, str]] = Counter()
    latex = any(isinstance(ex.rec.answer, str) for ex in examples)  # the column is text when a gold is LaTeX
    rows = []
    for ex in ordered:
        j = numbered[(ex.rec.id, ex.rec.thought)]
        numbered[(ex.rec.id, ex.rec.thought)] += 1
        rows.append({
            "id": f"{ex.rec.id}/{ex.rec.thought}/{j}",
            "question_id": ex.rec.id,
            "question": ex.rec.question,
            "answer": _answer_cell(ex.rec.answer, latex),
            "thought": ex.rec.thought,
            "input": ex.input,
            "target": ex.target,
            "teacher": ex.rec.model or "",
            **_kd_columns(ex.rec),
        })
    if any(KD_COLUMNS[0] in row for row in rows):  # every row gets the columns (empty: no log-probs)
        rows = [row if KD_COLUMNS[0] in row else row | {c: [] for c in KD_COLUMNS} for row in rows]
    return rows


def _kd_columns(rec: Record) -> dict[str, list[Any]]:
    """The teacher's top-k log-probs (`distill generate --logprobs K`) as this row's kd columns."""
    if META_KEY not in rec.meta:
        return {}
    try:
        return TopK.decode(rec.meta[META_KEY]).columns()
    except ValueError as exc:
        raise InputError(f"record {rec.id!r}: {exc}") from None


def _answer_cell(answer: Any, text: bool) -> float | str | None:
    if answer is None:
        return None
    return (answer if isinstance(answer, str) else repr(to_number(answer))) if text else float(answer)


def _counts(tally: Tally, splits: dict[str, list[Row]]) -> dict[str, Any]:
    def per_thought(counter: Counter[str]) -> dict[str, int]:
        return {t: counter[t] for t in thought_names() if counter[t]}

    reasons = sorted((r for r in tally.counts if r not in ("in", "kept")), key=REASONS.index)
    return {
        "in": per_thought(tally.counts["in"]),
        "dropped": {r: per_thought(tally.counts[r]) for r in reasons},
        "kept": per_thought(tally.counts["kept"]),
        "splits": {s: per_thought(Counter(r["thought"] for r in rows)) for s, rows in splits.items()},
        "questions": {s: len({r["question_id"] for r in rows}) for s, rows in splits.items()},
    }


# ---------------------------------------------------------------- writing
def _check_output(out: Path, overwrite: bool) -> None:
    """Fail before any work if `out` cannot be (re)placed: never clobber a user's directory."""
    if not out.exists():
        return
    if not out.is_dir():
        raise InputError("output exists and is not a directory", out)
    if not any(out.iterdir()):
        return
    if not overwrite:
        raise InputError("output directory is not empty; pass --overwrite to replace it (or choose another path)", out)
    if not (out / "mix.json").is_file():
        raise InputError("output directory is not a `distill mix` output (no mix.json); refusing to replace it", out)


def _publish(tmp: Path, out: Path) -> None:
    """Move the finished build into place; an earlier output is removed only once the new one is there."""
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        os.rename(out, old)
    os.rename(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def _sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _meta(inputs: Sequence[str | os.PathLike], out: Path, opts: MixOptions, cues: dict[str, str],
          examples: list[Example], counts: dict[str, Any], flagged: list[dict[str, Any]]) -> dict[str, Any]:
    names = [str(p) for p in inputs]
    return {
        "command": opts.command_line(names, str(out)),
        "distill_version": __version__,
        "inputs": [{"path": name, "sha256": _sha256(name)} for name in names],
        "options": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(opts).items()},
        "cues": {t: cues[t] for t in thought_names() if t in cues},
        "teachers": dict(sorted(Counter(ex.rec.model or "" for ex in examples).items())),
        "sources": dict(sorted(Counter(ex.rec.source or "" for ex in examples).items())),
        "counts": counts,
        "decontamination": {
            "eval_sets": list(opts.decontaminate),
            "ngram": opts.decontam_ngram,
            "threshold": opts.decontam_threshold,
            "flagged": flagged,
        },
    }


def _write(tmp: Path, splits: dict[str, list[Row]], meta: dict[str, Any]) -> Any:
    import datasets  # heavy: imported only when writing
    import pyarrow as pa

    kd = any(KD_COLUMNS[0] in row for split in SPLITS for row in splits[split])
    text = any(isinstance(r["answer"], str) for rows in splits.values() for r in rows)  # LaTeX golds (MATH)
    features = datasets.Features({
        **{c: datasets.Value("string") for c in COLUMNS}, "answer": datasets.Value("string" if text else "float64"),
        **({c: datasets.Sequence(datasets.Value(t)) for c, t in zip(KD_COLUMNS, ("int32", "int32", "float16"))}
           if kd else {}),
    })
    parts = {}
    for split in SPLITS:
        table = pa.Table.from_pylist(splits[split], schema=features.arrow_schema)
        # A fixed fingerprint (a content hash) instead of a random one keeps state.json identical.
        fingerprint = hashlib.sha256("".join(map(dumps, splits[split])).encode()).hexdigest()[:16]
        parts[split] = datasets.Dataset(datasets.table.InMemoryTable(table), fingerprint=fingerprint)
    dataset = datasets.DatasetDict(parts)
    was_disabled = datasets.utils.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        # One shard per split, even an empty one: load_from_disk fails on a split with no shard.
        dataset.save_to_disk(str(tmp), num_shards={s: 1 for s in SPLITS})
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()
    for split in SPLITS:
        write_jsonl(tmp / f"{split}.jsonl", splits[split])
    (tmp / "mix.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (tmp / "README.md").write_text(dataset_card(meta), encoding="utf-8")
    return dataset


def _push(out: Path, dataset: Any, repo_id: str) -> None:
    """Upload the card and mix.json first: push_to_hub then merges its metadata into that card."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, repo_type="dataset", exist_ok=True)
    for name in ("README.md", "mix.json"):
        api.upload_file(path_or_fileobj=str(out / name), path_in_repo=name, repo_id=repo_id, repo_type="dataset")
    dataset.push_to_hub(repo_id)


# ---------------------------------------------------------------- the card
def dataset_card(meta: dict[str, Any]) -> str:
    """README.md of the data set: counts, sources, teacher, filters and the command that built it."""
    counts, opts, decon = meta["counts"], meta["options"], meta["decontamination"]
    thoughts = [t for t in thought_names() if t in counts["in"] or t in counts["kept"]]
    split_rows = [[t, *(counts["splits"][s].get(t, 0) for s in SPLITS)] for t in thoughts]
    split_rows.append(["questions", *(counts["questions"][s] for s in SPLITS)])
    reasons = ["in", *counts["dropped"], "kept"]
    lookup = {"in": counts["in"], "kept": counts["kept"], **counts["dropped"]}
    filter_rows = [[r, *(lookup[r].get(t, 0) for t in thoughts)] for r in reasons]
    decon_line = (
        f"questions whose word {decon['ngram']}-grams (numbers as `#`) overlap an evaluation question's by "
        f"at least {decon['threshold']} (shared / n-grams of the shorter question) were dropped; evaluation "
        f"sets: {', '.join(decon['eval_sets'])}; {len(decon['flagged'])} questions flagged (listed in mix.json)"
        if decon["eval_sets"] else "off"
    )
    length_line = (
        f"source <= {opts['max_source_tokens']} and target <= {opts['max_target_tokens']} tokens of `{opts['tokenizer']}`"
        if opts["tokenizer"] else "off"
    )
    template = resources.files("distill").joinpath("templates/dataset_card.md").read_text(encoding="utf-8")
    return Template(template).substitute(
        thoughts=", ".join(thoughts),
        version=meta["distill_version"],
        command=meta["command"],
        split_table=md_table(["thought", *SPLITS], split_rows),
        filter_table=md_table(["", *thoughts], filter_rows),
        correctness="all rationales kept (--keep-incorrect)" if opts["keep_incorrect"]
        else "only rationales whose answer matches the gold one",
        selected=", ".join(opts["thoughts"]),
        per_question=opts["per_question"] or "no cap",
        balanced="yes" if opts["balance"] else "no",
        decontamination=decon_line,
        length=length_line,
        val_fraction=f"{opts['val_fraction']:g}",
        seed=opts["seed"],
        teachers=", ".join(f"`{t}` ({n})" for t, n in meta["teachers"].items()) or "none",
        sources=", ".join(f"`{s}` ({n})" for s, n in meta["sources"].items()) or "none",
        inputs=", ".join(f"`{i['path']}` (sha256 {i['sha256'][:12]})" for i in meta["inputs"]),
        cue_set=opts["student_cues"],
        cues="\n".join(f"- {t}: `{json.dumps(meta['cues'][t], ensure_ascii=False)}`" for t in meta['cues']),
        columns=", ".join(f"`{c}`" for c in COLUMNS),
    )

"""Evaluation and training sets: GSM8K, SVAMP, ASDiv, MultiArith, hub ids, generic files.

A *spec* selects a set: a registered name with an optional split and query (`gsm8k:test`,
`gsm8k:train`, `svamp`, `asdiv`, `multiarith`; plugged-in sets such as the built-in world's
`world:test?n=500&seed=1`), a hub id (`openai/gsm8k`, `ChilleD/SVAMP:test`) or a path
(`file.jsonl`, `.json`, `.csv`). The publishers' sets are read from their files under the data
directory (`--data-dir`, `$DISTILL_DATA`, `./shared/data` or `../shared/data`), else from the
Hugging Face hub through `datasets`. Gold answers are parsed to numbers; items whose gold is not
one number are skipped and reported, except in MATH (`math:train`, `math:test`, `math500`, filters
`?level=5&type=Geometry`), whose golds are LaTeX strings, and in files whose rows are marked
`answer_format: latex`. `register_dataset(name, loader)` adds a set from Python.
"""
from __future__ import annotations

import csv
import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill import math_data
from distill.dataset import DataSet, Skipped, data_dir
from distill.records import ANSWER_FORMAT, InputError, Record, iter_jsonl
from distill.registry import Registry
from solvers.answers import parse_gold

Row = dict[str, Any]


def _get(row: Row, *names: str) -> Any:
    """The first of `names` present in `row`, case-insensitively (hub mirrors vary the case)."""
    lower = {k.lower(): v for k, v in row.items()}
    for name in names:
        if name.lower() in lower:
            return lower[name.lower()]
    raise KeyError(names[0])


def _join(*parts: str) -> str:
    return " ".join(p.strip() for p in parts if p and p.strip())


# Row adapters: publisher (or hub) row -> (id, question, raw gold).
def _gsm8k(row: Row, i: int) -> tuple[str, str, Any]:
    return str(i), row["question"], row["answer"]


def _svamp(row: Row, i: int) -> tuple[str, str, Any]:
    return str(_get(row, "ID") if "ID" in row or "id" in row else i), _join(_get(row, "Body"), _get(row, "Question")), _get(row, "Answer")


def _asdiv(row: Row, i: int) -> tuple[str, str, Any]:
    return str(row.get("ID", row.get("id", i))), _join(_get(row, "Body"), _get(row, "Question")), _get(row, "Answer")


def _multiarith(row: Row, i: int) -> tuple[str, str, Any]:
    if "lSolutions" in row:
        return str(row["iIndex"]), row["sQuestion"].strip(), row["lSolutions"][0]
    return str(i), row["question"].strip(), _get(row, "final_ans", "answer")


@dataclass(frozen=True)
class Named:
    local: Callable[[Path, str], list[Row]]  # (data dir, split) -> publisher rows
    hub: str
    adapt: Callable[[Row, int], tuple[str, str, Any]]
    default_split: str = "test"


def _read_json(path: Path) -> list[Row]:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _read_asdiv(path: Path) -> list[Row]:
    rows = []
    for prob in ET.parse(path).getroot().iter("Problem"):
        rows.append({"ID": prob.get("ID"), **{child.tag: (child.text or "") for child in prob}})
    return rows


# A loader takes the whole spec (`name:split?query`) and the data directory (None: none found).
DataLoader = Callable[[str, "Path | None"], "DataSet"]
DATASETS: Registry[DataLoader] = Registry("data set")
HUB_IDS: dict[str, str] = {}  # hub id (lower case) -> registered name
PROMPT_SETS: dict[str, dict[str, str]] = {}  # registered name -> {thought: its teacher prompt file}


def register_dataset(name: str, loader: DataLoader, *, hub_ids: Iterable[str] = (), prompts: dict[str, str] | None = None,
                     replace: bool = False) -> DataLoader:
    """Make `name` (and `name:split?query`) a data set spec; `hub_ids` load through it too.
    `prompts` names the teacher prompt file of some thoughts for this set (a name under prompts/
    or a path), used by `generate` unless `--prompt` gives one; its key `synth` names the
    question-writing prompt of `distill synth` from this set's seeds."""
    DATASETS.register(name, loader, replace=replace)
    HUB_IDS.update({h.lower(): name.lower() for h in hub_ids})
    if prompts:
        PROMPT_SETS[name.lower()] = dict(prompts)
    return loader


def _registered_name(spec: str) -> str:
    """The registered name a spec starts with (`math:test?level=5` -> `math`), lower case."""
    name = spec.partition("?")[0].partition(":")[0].lower()
    return HUB_IDS.get(name, name)


def prompt_set(spec: str) -> dict[str, str]:
    """{thought: prompt file} the data set a spec names asks its teacher with ({}: the thoughts' own)."""
    return dict(PROMPT_SETS.get(_registered_name(spec), {}))


def _from_hub(hub_id: str, split: str) -> list[Row]:
    import datasets  # heavy: imported only when a set really comes from the hub

    config = "main" if hub_id == "openai/gsm8k" else None
    return [dict(r) for r in datasets.load_dataset(hub_id, config, split=split)]


def _build(name: str, rows: Iterable[Row], adapt: Callable[[Row, int], tuple[str, str, Any]]) -> DataSet:
    out = DataSet(name, [])
    for i, row in enumerate(rows):
        try:
            rid, question, raw = adapt(row, i)
        except KeyError as exc:
            raise InputError(f"item {i}: missing field {exc.args[0]!r}", name) from None
        gold = parse_gold(raw)
        if gold is None:
            out.skipped.append(Skipped(rid, f"gold answer is not one number: {str(raw)[:60]!r}"))
            continue
        out.records.append(Record(id=f"{name}/{rid}", question=question, answer=gold, source=name))
    return out


def _read_table(path: Path) -> Iterable[tuple[int, Row]]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return iter_jsonl(path)
    if suffix == ".json":
        data = _read_json(path)
        if not isinstance(data, list):
            raise InputError("expected a JSON list of objects", path)
        return ((i + 1, row) for i, row in enumerate(data))
    if suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as fh:
            return [(i + 2, row) for i, row in enumerate(csv.DictReader(fh))]  # line 1 is the header
    raise InputError("unsupported file type (use .jsonl, .json or .csv)", path)


def load_file(path: str | os.PathLike, question_field: str = "question", answer_field: str = "answer") -> DataSet:
    """A generic JSONL/JSON/CSV file; gold answers may be numbers or text like `#### 72`."""
    path = Path(path)
    out = DataSet(path.stem, [])
    for lineno, row in _read_table(path):
        for name in (question_field, answer_field):
            if name not in row:
                raise InputError(f"missing field {name!r}", path, lineno)
        gold = parse_gold(row[answer_field])
        rid = str(row.get("id", lineno))
        if gold is None and _marked_latex(row) and isinstance(row[answer_field], str) and row[answer_field].strip():
            gold = row[answer_field].strip()  # a LaTeX gold (synthesised MATH-style questions)
        if gold is None:
            out.skipped.append(Skipped(rid, f"line {lineno}: gold answer is not one number: {str(row[answer_field])[:60]!r}"))
            continue
        meta = {k: v for k, v in row.items() if k not in (question_field, answer_field, "id")}
        out.records.append(Record(id=rid, question=str(row[question_field]), answer=gold, source=path.stem, meta=meta))
    return out


def _math_rows(path: Path, question_field: str) -> bool:
    """Whether a JSONL file holds MATH rows (`problem` and `solution`, no question field)."""
    if path.suffix.lower() != ".jsonl":
        return False
    first = next((row for _, row in iter_jsonl(path)), {})
    return question_field not in first and {"problem", "solution"} <= set(first)


def _marked_latex(row: Row) -> bool:
    meta = row.get("meta") if isinstance(row.get("meta"), dict) else {}
    return "latex" in (row.get(ANSWER_FORMAT), meta.get(ANSWER_FORMAT))


def parse_shard(shard: str | None) -> tuple[int, int] | None:
    """`i/n` -> (i, n), with 0 <= i < n."""
    if shard is None:
        return None
    try:
        i, n = (int(x) for x in shard.split("/"))
    except ValueError:
        raise InputError(f"--shard must look like 0/4, got {shard!r}") from None
    if not 0 <= i < n:
        raise InputError(f"--shard {shard}: index must be in [0, {n})")
    return i, n


def load(
    spec: str,
    *,
    limit: int | None = None,
    shard: str | None = None,
    question_field: str = "question",
    answer_field: str = "answer",
    data_root: str | os.PathLike | None = None,
) -> DataSet:
    """Load the set a spec names; `limit` keeps the first N items, then `shard` i/n keeps every n-th."""
    path = Path(spec)
    if path.suffix.lower() in (".jsonl", ".json", ".csv") or path.is_file():
        if not path.is_file():
            raise InputError("no such file", path)
        ds = (math_data.load_math(str(path)) if _math_rows(path, question_field)
              else load_file(path, question_field, answer_field))
    else:
        ds = _load_named(spec, data_root)
    records = ds.records[:limit] if limit is not None else ds.records
    if (sh := parse_shard(shard)) is not None:
        records = records[sh[0]::sh[1]]
    ds.records = records
    return ds


def _load_named(spec: str, data_root: str | os.PathLike | None) -> DataSet:
    head, mark, query = spec.partition("?")
    name, colon, split = head.partition(":")
    key = HUB_IDS.get(name.lower(), name.lower())
    loader = DATASETS.find(key)
    if loader is None:
        if "/" in name:  # any other hub id: generic fields
            rows = _from_hub(name, split or "test")
            return _build(spec, rows, lambda r, i: (str(r.get("id", i)), r["question"], r["answer"]))
        raise InputError(f"unknown data set {spec!r} (known: {', '.join(DATASETS.names())}, a hub id, "
                         "or a .jsonl/.json/.csv path)")
    return loader(f"{key}{colon}{split}{mark}{query}", data_dir(data_root))


def publisher_set(key: str, named: Named, *, splits: tuple[str, ...] | None = None, label_split: bool = False) -> DataLoader:
    """A loader for a set read from its publisher's files under the data directory, else the hub."""
    def load_set(spec: str, root: Path | None) -> DataSet:
        split = spec.partition(":")[2] or named.default_split
        if splits is not None and split not in splits:
            raise InputError(f"{key} has splits {' and '.join(splits)}, not {split!r}")
        label = f"{key}:{split}" if label_split else key
        if root is not None:
            try:
                return _build(label, named.local(root, split), named.adapt)
            except FileNotFoundError:
                pass
        return _build(label, _from_hub(named.hub, split), named.adapt)

    return load_set


for _key, _named, _kw in (
    ("gsm8k", Named(lambda d, s: [o for _, o in iter_jsonl(d / "gsm8k" / f"{s}.jsonl")], "openai/gsm8k", _gsm8k),
     {"splits": ("train", "test"), "label_split": True}),
    ("svamp", Named(lambda d, s: _read_json(d / "svamp" / "SVAMP.json"), "ChilleD/SVAMP", _svamp), {}),
    ("asdiv", Named(lambda d, s: _read_asdiv(d / "asdiv" / "ASDiv.xml"), "EleutherAI/asdiv", _asdiv, "validation"), {}),
    ("multiarith", Named(lambda d, s: _read_json(d / "multiarith" / "MultiArith.json"), "ChilleD/MultiArith",
                         _multiarith), {}),
):
    register_dataset(_key, publisher_set(_key, _named, **_kw), hub_ids=(_named.hub,))


# MATH (Hendrycks et al. 2021) and MATH500: LaTeX golds, level and subject in meta (distill/math_data.py).

_MATH_PROMPTS = {"cot": "math_cot.yaml", "pot": "math_pot.yaml", "synth": "math_synth.yaml"}
register_dataset("math", lambda spec, root: math_data.load_math(spec, data_root=root), hub_ids=(math_data.HUB_MATH,),
                 prompts=_MATH_PROMPTS)
register_dataset("math500", lambda spec, root: math_data.load_math(spec, data_root=root),
                 hub_ids=(math_data.HUB_MATH500,), prompts=_MATH_PROMPTS)

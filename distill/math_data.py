"""MATH (Hendrycks et al. 2021) and MATH500 as Records: plain loaders, to be registered as data sets.

`math:train` and `math:test` are the publishers' rows (`{"unique_id", "problem", "level", "type",
"solution"}`, here ../shared/data/math/{train,test}.jsonl), `math500` the PRM800K subset
(`{"problem", "solution", "answer", "subject", "level", "unique_id"}`). A path to such a JSONL file
or a hub id (`EleutherAI/hendrycks_math`, one config per subject; `HuggingFaceH4/MATH-500`) works
too. The gold answer is the last `\\boxed{}` of the solution, a LaTeX string; `level` (an int, None
for `Level ?`) and `subject` travel in `meta` with the solution.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from distill.dataset import DataSet, Skipped, data_dir
from distill.records import InputError, Record, iter_jsonl
from solvers.mathans import extract_boxed

SUBJECTS = ("Algebra", "Counting & Probability", "Geometry", "Intermediate Algebra", "Number Theory",
            "Prealgebra", "Precalculus")
HUB_MATH, HUB_MATH500 = "EleutherAI/hendrycks_math", "HuggingFaceH4/MATH-500"
# EleutherAI/hendrycks_math names its configs after the subjects
_HUB_CONFIGS = {"algebra": "Algebra", "counting_and_probability": "Counting & Probability", "geometry": "Geometry",
                "intermediate_algebra": "Intermediate Algebra", "number_theory": "Number Theory",
                "prealgebra": "Prealgebra", "precalculus": "Precalculus"}


def parse_level(value: Any) -> int | None:
    """`Level 3` or 3 -> 3; `Level ?` (two MATH items) -> None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    m = re.fullmatch(r"\s*(?:Level\s*)?(\d)\s*", str(value))
    return int(m.group(1)) if m else None


def _subject(value: str) -> str:
    """`Counting & Probability` as it is, or the hub's `counting_and_probability`."""
    return _HUB_CONFIGS.get(value, value)


def to_record(row: dict[str, Any], source: str, index: int, where: str | os.PathLike | None = None) -> Record | Skipped:
    """One publisher row as a Record (answer: the boxed LaTeX string), or why it was skipped."""
    for name in ("problem", "solution"):
        if name not in row:
            raise InputError(f"item {index}: missing field {name!r}", where or source)
    rid = str(row.get("unique_id", index))
    gold = extract_boxed(row["solution"])
    if not gold:
        return Skipped(rid, "no \\boxed{} answer in the solution")
    meta = {
        "level": parse_level(row.get("level")),
        "subject": _subject(str(row.get("type", row.get("subject", "")))),
        "solution": row["solution"],
    }
    if "answer" in row:  # MATH500 states the answer too
        meta["stated_answer"] = row["answer"]
    return Record(id=f"{source}/{rid}", question=row["problem"], answer=gold, source=source, meta=meta)  # type: ignore[arg-type]


def build(rows: Iterable[dict[str, Any]], source: str, *, level: Iterable[int] | None = None,
          subject: Iterable[str] | None = None, where: str | os.PathLike | None = None) -> DataSet:
    """Records of `rows`, keeping only the given levels / subjects when asked."""
    levels = set(level) if level is not None else None
    subjects = {_subject(s).lower() for s in subject} if subject is not None else None
    out = DataSet(source, [])
    for i, row in enumerate(rows):
        rec = to_record(row, source, i, where)
        if isinstance(rec, Skipped):
            out.skipped.append(rec)
        elif (levels is None or rec.meta["level"] in levels) and (subjects is None or rec.meta["subject"].lower() in subjects):
            out.records.append(rec)
    return out


def _filters(spec: str, query: str, level: Iterable[int] | None, subject: Iterable[str] | None):
    """`level=4,5&type=Geometry` -> (levels, subjects), on top of those given as arguments."""
    for part in query.split("&"):
        key, _, value = part.partition("=")
        values = [v.strip() for v in value.split(",") if v.strip()]
        if key == "level" and values and all(v.isdigit() for v in values):
            level = [*(level or []), *map(int, values)]
        elif key in ("type", "subject") and values:
            subject = [*(subject or []), *values]
        else:
            raise InputError(f"{spec}: unknown filter {part!r} (use level=1..5 and type=<subject>)")
    return level, subject


def _hub_rows(hub_id: str, split: str) -> list[dict[str, Any]]:
    import datasets  # heavy: only when the set really comes from the hub

    if hub_id == HUB_MATH:
        return [{**dict(r), "type": r.get("type", _HUB_CONFIGS[c])} for c in _HUB_CONFIGS
                for r in datasets.load_dataset(hub_id, c, split=split)]
    return [dict(r) for r in datasets.load_dataset(hub_id, split=split)]


def load_math(spec: str = "math:test", *, level: Iterable[int] | None = None, subject: Iterable[str] | None = None,
              data_root: str | os.PathLike | None = None) -> DataSet:
    """`math:train`, `math:test`, `math500`, a hub id (`EleutherAI/hendrycks_math:test`,
    `HuggingFaceH4/MATH-500`) or a path to a JSONL file in either format. Filters come as arguments
    or in the spec: `math:test?level=4,5&type=Geometry` (`subject=` too)."""
    spec, _, query = spec.partition("?")
    if query:
        level, subject = _filters(spec, query, level, subject)
    path = Path(spec)
    if path.suffix.lower() == ".jsonl" or path.is_file():
        if not path.is_file():
            raise InputError("no such file", path)
        return build((o for _, o in iter_jsonl(path)), path.stem, level=level, subject=subject, where=path)
    name, _, split = spec.partition(":")
    key = name.lower()
    if key in ("math", HUB_MATH.lower()):
        split = split or "test"
        if split not in ("train", "test"):
            raise InputError(f"math has splits train and test, not {split!r}")
        local, hub, source = ("math", f"{split}.jsonl"), HUB_MATH, f"math:{split}"
    elif key in ("math500", HUB_MATH500.lower()):
        split = split or "test"
        local, hub, source = ("math", "math500.jsonl"), HUB_MATH500, "math500"
    else:
        raise InputError(f"unknown MATH set {spec!r} (math:train, math:test, math500, a hub id or a .jsonl path)")
    root = data_dir(data_root)
    if root is not None and (root / local[0] / local[1]).is_file():
        file = root / local[0] / local[1]
        return build((o for _, o in iter_jsonl(file)), source, level=level, subject=subject, where=file)
    return build(_hub_rows(hub, split), source, level=level, subject=subject)

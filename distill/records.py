"""The one record schema that flows through every stage, and its JSONL I/O.

Every stage (validate, generate, mix, train, eval) reads and writes `Record`s as JSON lines.
Fields a stage does not know are kept in `meta` and written back, so nothing a user put in a
file is lost on the way through.
"""
from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any


class InputError(ValueError):
    """Bad user input; the message is one line naming the file, line and field."""

    def __init__(self, message: str, path: str | os.PathLike | None = None, line: int | None = None):
        where = f"{path}:{line}: " if path is not None and line is not None else f"{path}: " if path else ""
        super().__init__(f"{where}{message}")


class RunFailed(RuntimeError):
    """A run that did nothing useful (every request failed, ...): one line saying why; exit status 1."""


PARTIAL_EXIT = 3  # exit status of a run that finished but left some work failed (a rerun retries it)


@dataclass
class Record:
    id: str
    question: str
    answer: float | int | str | None = None  # gold: a number (GSM8K...), a LaTeX string (MATH), None: unknown
    source: str = ""  # data set the question comes from, e.g. "gsm8k:test"
    thought: str | None = None  # a registered thought: cot | pot | eot | ...
    rationale: str | None = None
    prediction: float | int | str | None = None  # a number, or the normalised LaTeX answer where it is not one
    status: str | None = None  # "ok" or a failure class (solvers.Status)
    correct: bool | None = None
    model: str | None = None  # the teacher or student that wrote the rationale
    sample: int = 0  # index among the samples drawn for (question, thought)
    # Provenance that resume decides by (`distill generate`/`synth`): the key of the teacher request
    # that produced the record, and the hash of the prompt it was asked with.
    request: str | None = None
    prompt_hash: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Record":
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known}
        kwargs["meta"] = {**(data.get("meta") or {}), **extra}
        for name in ("request", "prompt_hash"):  # files written before these were fields kept them in meta
            if kwargs.get(name) is None and isinstance(kwargs["meta"].get(name), str):
                kwargs[name] = kwargs["meta"].pop(name)
        kwargs["id"] = str(kwargs.get("id", ""))
        return cls(**kwargs)


# Meta keys that travel from a data set's record to every record made from it (generated
# rationales, predictions), so that reports can break results down by them (MATH: level, subject).
BREAKDOWNS = ("level", "subject")
# meta["answer_format"] == "latex": the record's answers are LaTeX although it has no gold (yet):
# synthesised MATH-style questions; files whose gold is a string are read as LaTeX with it.
ANSWER_FORMAT = "answer_format"


def carried_meta(record: Record) -> dict[str, Any]:
    """The meta of `record` that travels to the records made from it."""
    return {k: record.meta[k] for k in (*BREAKDOWNS, ANSWER_FORMAT) if record.meta.get(k) is not None}


def latex_answers(record: Record) -> bool:
    """Whether the record's answers are compared as LaTeX (a string gold, or marked so)."""
    return isinstance(record.answer, str) or record.meta.get(ANSWER_FORMAT) == "latex"


def read_yaml_mapping(path: str | os.PathLike, what: str, *, config: bool = False) -> dict[str, Any]:
    """A YAML file that holds a mapping (`what` names it in errors: "recipe", "prompt", ...).

    `config`: settings, where `2e-5` is a float as in YAML 1.2 (PyYAML reads YAML 1.1, where it is a string);
    prompts and cues keep their text as written.
    """
    import yaml

    try:
        data = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=config_loader() if config else yaml.SafeLoader)
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"cannot read {what}: {str(exc).splitlines()[0]}", path) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(f"a {what} file is a YAML mapping", path)
    return data


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; a malformed line is an InputError."""
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"malformed JSON ({exc.msg} at column {exc.colno})", path, lineno) from None
            if not isinstance(obj, dict):
                raise InputError("expected a JSON object", path, lineno)
            yield lineno, obj


def cut_torn_line(path: str | os.PathLike) -> bytes:
    """Cut a torn last line (a killed run's half-written append) off a file we append to, so that
    later appends start clean; returns the complete lines' bytes."""
    with open(path, "rb+") as fh:
        data = fh.read()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            fh.truncate(end)
    return data[:end]


def read_records(path: str | os.PathLike) -> list[Record]:
    out = []
    for lineno, obj in iter_jsonl(path):
        for name in ("id", "question"):
            if name not in obj:
                raise InputError(f"missing field {name!r}", path, lineno)
        out.append(Record.from_dict(obj))
    return out


def dumps(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False)


def check_writable(path: str | os.PathLike, overwrite: bool) -> None:
    """Refuse to clobber a user's existing output unless asked to."""
    if Path(path).exists() and not overwrite:
        raise InputError("output exists; pass --overwrite to replace it (or choose another path)", path)


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict[str, Any] | Record]) -> int:
    """Write rows atomically: to a temporary file first, renamed into place when complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    n = 0
    with open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(dumps(row.to_dict() if isinstance(row, Record) else row) + "\n")
            n += 1
    os.replace(tmp, path)
    return n


@functools.cache
def config_loader() -> Any:
    """yaml.SafeLoader that also reads exponent floats without a dot (`1e-3`, `2E+5`) as floats."""
    import re

    import yaml

    class ConfigLoader(yaml.SafeLoader):
        pass

    ConfigLoader.add_implicit_resolver("tag:yaml.org,2002:float",
                                       re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
                                       list("-+0123456789"))
    return ConfigLoader

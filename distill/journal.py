"""Resume a generation run after a crash, kill -9 or Ctrl-C without paying a request twice.

Beside the output `OUT.jsonl` lives `OUT.jsonl.journal`, an append-only log with two kinds of
lines, each flushed as soon as it is known:

- `{"key": K, "completions": [...]}`: the teacher answered request K (it is paid for);
- `{"key": K, "written": true}`: the records of K are in the output.

On resume a request that was answered is never sent again; one answered but not written is
validated again from the journal; records in the output whose request has no `written` line
(a crash between the two writes, or a transient failure that will be retried) are dropped.
Flushing hands lines to the OS, which keeps them through a killed process (not a power cut).
"""
from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from distill.records import Record, cut_torn_line, dumps, write_jsonl
from distill.teachers.base import Completion, is_transient


def journal_path(out: str | os.PathLike) -> Path:
    return Path(f"{out}.journal")


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    """The complete JSON lines of a file we appended to; a torn last line is cut off the file."""
    if not path.exists():
        return
    for line in cut_torn_line(path).splitlines():
        if line.strip():
            yield json.loads(line)


class Journal:
    def __init__(self, out: str | os.PathLike):
        self.out = Path(out)
        self.path = journal_path(out)
        self.answered: dict[str, list[Completion]] = {}
        self.written: set[str] = set()
        self._fh: TextIO | None = None

    def load(self) -> list[Record]:
        """Read the journal and the output; return the output records that stay (and rewrite the
        output without the others)."""
        for entry in _lines(self.path):
            if "completions" in entry:
                self.answered[entry["key"]] = [Completion(**c) for c in entry["completions"]]
            elif entry.get("written"):
                self.written.add(entry["key"])
        if not self.out.exists():
            self.written.clear()  # the output is gone: rebuild it from the answers
            return []
        rows = list(_lines(self.out))
        records = [Record.from_dict(r) for r in rows]
        kept = [r for r in records if r.request in self.written]
        if len(kept) < len(rows):
            write_jsonl(self.out, kept)
        return kept

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a", encoding="utf-8")

    def _append(self, entry: dict[str, Any]) -> None:
        assert self._fh is not None
        self._fh.write(dumps(entry) + "\n")
        self._fh.flush()

    def record_answer(self, key: str, completions: list[Completion]) -> None:
        self.answered[key] = completions
        self._append({"key": key, "completions": [vars(c) for c in completions]})

    async def answer(self, key: str, ask: Callable[[], Awaitable[list[Completion]]]) -> tuple[list[Completion], bool]:
        """The completions of request `key`: from the journal, else asked now (and journaled unless a
        transient failure left it unanswered); the flag says whether the teacher was asked."""
        if (completions := self.answered.get(key)) is not None:
            return completions, False
        completions = await ask()
        if not any(is_transient(c.error) for c in completions):
            self.record_answer(key, completions)
        return completions, True

    def record_written(self, key: str) -> None:
        self.written.add(key)
        self._append({"key": key, "written": True})

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def remove_run(out: str | os.PathLike) -> None:
    """`--overwrite`: forget an earlier run into the same output."""
    for path in (Path(out), journal_path(out)):
        path.unlink(missing_ok=True)

"""Tool-integrated reasoning (TIR) traces: text that runs code as it goes (ToRA's format).

A trace is reasoning text with code cells and what they printed:

    Let me compute the total.
    ```python
    total = 3 * 4
    print(total)
    ```
    ```output
    12
    ```
    So the answer is \\boxed{12}.

`parse` cuts a trace into `Turn`s (text, code, output); `render` writes them back. A writer (a
teacher at generation, a student at evaluation) stops at `STOP`; `open_cells` says which cells to
run then (all of the trace's cells, in order: state is carried across them by running them again
in one fresh namespace, `Executor.run_cells`), and `append_output` feeds the last cell's output
back. `check_trace` validates a finished trace: every recorded output must be what its code prints
now (`output-mismatch` otherwise: a writer that made an output up), then the final answer is read
as for a chain of thought.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from solvers.grading import cot_outcome
from solvers.outcome import Cells, Outcome, Status

STOP = "```output"  # the stop sequence of a TIR writer: its code cell is run here
OUTPUT_CHARS = 600  # characters of a cell's output fed back to the writer (head and tail kept)
_BLOCK = re.compile(r"```(?:python|py|python3)[ \t]*\n(.*?)```[ \t]*\n?(?:\s*```output[ \t]*\n(.*?)(?:```[ \t]*\n?|\Z))?",
                    re.DOTALL)
# Cells whose output may differ from run to run: never compared with what was recorded.
_NONDETERMINISTIC = re.compile(r"\b(?:random|time|datetime|uuid|secrets)\b")
_TOKEN = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|\w+|[^\w\s]")
_NUMPY_SCALAR = re.compile(r"\bnp\.(?:float|int|uint|complex|bool_?)\d*\((.*?)\)")
_ERROR_LINE = re.compile(r"^\s*([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning))\b")


@dataclass(frozen=True)
class Turn:
    text: str  # reasoning before the code (the last turn: the text after the last cell)
    code: str | None = None
    output: str | None = None  # what the trace says the code printed; None: no output block

    def to_dict(self) -> dict[str, str | None]:
        return {"text": self.text, "code": self.code, "output": self.output}


def parse(trace: str) -> list[Turn]:
    """The turns of a trace; the last holds the text after the last cell (code None)."""
    turns, pos = [], 0
    for m in _BLOCK.finditer(trace):
        output = m.group(2)
        turns.append(Turn(trace[pos:m.start()], m.group(1), None if output is None else output.rstrip("\n")))
        pos = m.end()
    turns.append(Turn(trace[pos:]))
    return turns


def output_spans(trace: str) -> list[tuple[int, int]]:
    """Character ranges of what the interpreter wrote into a trace: for each cell with an output,
    from just after its `STOP` marker to the end of the closing fence line (exactly what
    `append_output` adds after the marker). The writer's own text, the marker included, is outside."""
    spans = []
    for m in _BLOCK.finditer(trace):
        if m.group(2) is not None:
            spans.append((trace.rindex(STOP, m.start(), m.start(2)) + len(STOP), m.end()))
    return spans


def render(turns: list[Turn]) -> str:
    parts = []
    for t in turns:
        parts.append(t.text)
        if t.code is not None:
            parts.append(f"```python\n{t.code.rstrip()}\n```\n")
            if t.output is not None:
                parts.append(f"```output\n{t.output}\n```\n")
    return "".join(parts)


def open_cells(text: str) -> list[str] | None:
    """Where a writer stopped at `STOP` after a code cell: the sources of all the trace's cells, in
    order (the last one is the cell to run); None where the text does not end in a cell."""
    body = text.rstrip()
    if body.endswith(STOP):
        body = body[: -len(STOP)]
    turns = parse(body)
    if len(turns) < 2 or turns[-2].output is not None or turns[-1].text.strip():
        return None
    return cells_of(turns)


def shown(cell: tuple[str, str | None]) -> str:
    """A cell's output as a notebook shows it: what it printed, else the value of its last line."""
    printed, value = cell
    return printed if printed.strip() or value is None else value


def fit(output: str, limit: int = OUTPUT_CHARS) -> str:
    """An output cut to `limit` characters for the writer's context: its head and its tail (where
    an error line is)."""
    output = output.rstrip("\n")
    if len(output) <= limit:
        return output
    half = (limit - 5) // 2
    return f"{output[:half]}\n...\n{output[-half:]}"


def append_output(text: str, output: str) -> str:
    """`text` (stopped after a cell, with or without the `STOP` marker) with the cell's output."""
    body = text.rstrip()
    if body.endswith(STOP):
        body = body[: -len(STOP)].rstrip()
    return f"{body}\n{STOP}\n{fit(output)}\n```\n"


def _normal(text: str) -> str:
    text = _NUMPY_SCALAR.sub(r"\1", text.replace("\r\n", "\n"))
    return "\n".join(line.rstrip() for line in text.strip().splitlines() if line.strip())


def _same_tokens(a: str, b: str) -> bool:
    """The same tokens, in any order (sets and dicts print in hash order), numbers to 1e-6."""
    ta, tb = _TOKEN.findall(a), _TOKEN.findall(b)
    if len(ta) != len(tb):
        return False

    def split(tokens: list[str]) -> tuple[list[float], list[str]]:
        numbers, words = [], []
        for t in tokens:
            try:
                numbers.append(float(t))
            except ValueError:
                words.append(t)
        return sorted(numbers), sorted(words)

    (na, wa), (nb, wb) = split(ta), split(tb)
    return wa == wb and len(na) == len(nb) and all(math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-9) for x, y in zip(na, nb))


def _error_type(text: str) -> str | None:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    m = _ERROR_LINE.match(lines[-1]) if lines else None
    return m.group(1).rsplit(".", 1)[-1] if m else None


def _truncated_match(recorded: str, actual: str) -> bool:
    """A recorded output that its author's tool cut (`...` between the kept parts)."""
    parts = [p.strip() for p in re.split(r"\.\.\.+|…", recorded) if p.strip()]
    if len(parts) < 1 or "..." not in recorded and "…" not in recorded:
        return False
    pos = 0
    for part in parts:
        pos = actual.find(part, pos)
        if pos < 0:
            return False
        pos += len(part)
    return True


def output_matches(recorded: str, cell: tuple[str, str | None]) -> bool:
    """Whether a recorded output is what the cell prints (or displays) when run again: the same text
    up to blank lines and trailing spaces, or the same tokens in another order (numbers to 1e-6),
    or a cut of it, or an error of the same type (messages and tracebacks differ by version)."""
    printed, value = cell
    want = _normal(recorded)
    candidates = {_normal(printed), _normal(shown(cell))} | ({_normal(printed + "\n" + value)} if value else set())
    if want in candidates or any(_same_tokens(want, c) for c in candidates):
        return True
    if any(_truncated_match(want, c) for c in candidates):
        return True
    kind = _error_type(want)
    return kind is not None and kind == _error_type(printed)


def cells_of(turns: list[Turn]) -> list[str]:
    return [t.code for t in turns if t.code is not None]


def check_trace(trace: str, cells: Cells) -> Outcome:
    """The verdict on a finished trace given what its cells did when run again (`run_cells` on
    `cells_of(parse(trace))`): the sandbox's failure, else `output-mismatch` at the first recorded
    output the code does not print, else the final answer as for a chain of thought."""
    if cells.status is not Status.OK:
        return Outcome.fail(cells.status, cells.detail)
    coded = [t for t in parse(trace) if t.code is not None]
    for i, (turn, cell) in enumerate(zip(coded, cells.outputs), 1):
        if turn.output is None or _NONDETERMINISTIC.search(turn.code or ""):
            continue
        if not output_matches(turn.output, cell):
            return Outcome.fail(Status.OUTPUT_MISMATCH,
                                f"cell {i}: recorded {fit(turn.output, 80)!r}, the code prints {fit(shown(cell), 80)!r}")
    return cot_outcome(trace)


__all__ = ["OUTPUT_CHARS", "STOP", "Turn", "append_output", "cells_of", "check_trace", "fit", "open_cells",
           "output_matches", "output_spans", "parse", "render", "shown"]

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
_FRAMES = re.compile(r"^Traceback \(most recent call last\):\n(?:(?:[ \t].*)?\n)*", re.MULTILINE)


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


def _number(token: str) -> float | None:
    try:
        return float(token)
    except ValueError:
        return None


def _items(body: str) -> list[str]:
    """The comma-separated items of a set's or dict's body (commas inside brackets kept)."""
    items, depth, start = [], 0, 0
    for i, c in enumerate(body):
        depth += (c in "([") - (c in ")]")
        if c == "," and depth == 0:
            items.append(body[start:i].strip())
            start = i + 1
    return [*items, body[start:].strip()]


def _canonical(text: str) -> str:
    """`text` with the items of every `{...}` in a fixed order: sets and dicts print in hash or
    insertion order, which differs between runs and versions (each item stays whole: a value
    moved to another key is still a change)."""
    def key(item: str) -> tuple[str, ...]:
        return tuple(f"{n:.6g}" if (n := _number(t)) is not None else t for t in _TOKEN.findall(item))

    inner = re.compile(r"\{([^{}]*)\}")
    while (m := inner.search(text)) is not None:
        text = f"{text[:m.start()]}\x02{', '.join(sorted(_items(m.group(1)), key=key))}\x03{text[m.end():]}"
    return text.replace("\x02", "{").replace("\x03", "}")


def _same_tokens(a: str, b: str) -> bool:
    """The same tokens in the same order (sets and dicts: their items in any order), numbers to 1e-6."""
    ta, tb = _TOKEN.findall(_canonical(a)), _TOKEN.findall(_canonical(b))
    if len(ta) != len(tb):
        return False
    for x, y in zip(ta, tb):
        nx, ny = _number(x), _number(y)
        if not (x == y or nx is not None and ny is not None and math.isclose(nx, ny, rel_tol=1e-6, abs_tol=1e-9)):
            return False
    return True


def _cut_of(cut: str, full: str) -> bool:
    """Whether `cut` is `full` cut by a tool that keeps its head and tail (`...` between them)."""
    parts = [p.strip() for p in re.split(r"\.\.\.+|…", cut)]
    if len(parts) < 2 or not parts[0] and not parts[-1]:
        return False
    if not (full.startswith(parts[0]) and full.endswith(parts[-1])):
        return False
    pos, end = len(parts[0]), len(full) - len(parts[-1])
    for part in parts[1:-1]:
        pos = full.find(part, pos)
        if pos < 0:
            return False
        pos += len(part)
    return pos <= end


def _same(a: str, b: str) -> bool:
    a, b = _normal(a), _normal(b)
    return a == b or _same_tokens(a, b) or _cut_of(a, b) or _cut_of(b, a)


def _split_error(text: str) -> tuple[str, str | None]:
    """(what was printed, the type of the error that ended the cell or None); traceback frames,
    which differ by tool and version, dropped."""
    lines = [line for line in _FRAMES.sub("", text.replace("\r\n", "\n")).rstrip().splitlines() if line.strip()]
    m = _ERROR_LINE.match(lines[-1]) if lines else None
    if m is None:
        return text, None
    return "\n".join(lines[:-1]), m.group(1).rsplit(".", 1)[-1]


def output_matches(recorded: str, cell: tuple[str, str | None]) -> bool:
    """Whether a recorded output is what the cell prints (or displays) when run again: the same text
    up to blank lines and trailing spaces, numbers to 1e-6, the items of sets and dicts in any order,
    or a head-and-tail cut of it; an error of the same type (messages and tracebacks differ by
    version) after the same printed text (unless the writer's tool kept only the error line)."""
    printed, value = cell
    want, want_error = _split_error(recorded)
    got, got_error = _split_error(printed)
    if want_error is not None or got_error is not None:
        return want_error == got_error and (not want.strip() or _same(want, got))
    return any(_same(recorded, c) for c in {printed, shown(cell), *([printed + "\n" + value] if value else [])})


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

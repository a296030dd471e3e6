"""Tool-integrated decoding (the `tir` thought): a sequence stops at `solvers.tir.STOP`, the cells
of its trace so far run in the sandbox (as a notebook: all of them again, in one namespace), the
last cell's output is appended to that sequence's context as tokens, and decoding resumes.

What both decoding paths share lives here, so that they stop, run and resume identically:
- `ToolSession`: where a row's text reaches the marker (`find_stop`), whether it may run its cells
  (`cells`: a code cell before the marker, rounds and token budget left), the sandbox batch (in a
  thread: a decoding loop keeps stepping while it runs) and the output's tokens (`injection`).
- `Rows`: per row of a batch, the rounds so far (where each starts and stops, what was fed back),
  turned into a `Trace` (the text and `meta["turns"]`) at the end.
- `generate_rounds`: the plain `model.generate` path (any HF model, sampling too): generate with a
  per-row stop on the marker, run the stopped rows' cells in one batch, append the outputs' tokens,
  generate those rows again, until no row is open. `graphs.GreedyLoop` is the static-cache path.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from solvers.outcome import Cells, Status
from solvers.tir import OUTPUT_CHARS, STOP, fit, open_cells, shown

WINDOW = 24  # tokens decoded when looking for the marker: it ends within this many of where it starts
OUTPUT_TOKENS = 64  # tokens of one cell's output fed back at most (the cache holds a budget per round)


class ToolPrompt(str):
    """A prompt whose thought runs code as it goes: decoding it stops at the marker to run its cells."""


@dataclass
class Trace:
    """A tool-integrated sample: the whole text (outputs included) and its rounds."""

    text: str
    turns: list[dict[str, Any]]


def output_text(cells: Cells) -> str:
    """What a row is shown of its cells: the last cell's output, or why the sandbox ended them."""
    if cells.status is not Status.OK:
        return f"{cells.status.value}: {cells.detail}".rstrip(": ")
    return shown(cells.outputs[-1]).rstrip("\n") if cells.outputs else ""


@dataclass
class Round:
    start: int  # token index (in the row's new tokens) where the round begins
    stop: int | None = None  # where it ended at the marker (None: the last round)
    code: str | None = None
    output: str | None = None
    status: str | None = None
    output_ids: list[int] = field(default_factory=list)


class Rows:
    """The host's record of a batch's rows: which use tools, their rounds, tokens fed so far."""

    def __init__(self, tools: Sequence[bool]):
        self.tools = list(tools)
        self.rounds: list[list[Round]] = [[Round(0)] for _ in tools]

    def fed(self, row: int) -> int:
        return sum(len(r.output_ids) for r in self.rounds[row])

    def start(self, row: int) -> int:
        return self.rounds[row][-1].start

    def stopped(self, row: int, stop: int, code: str) -> None:
        self.rounds[row][-1].stop, self.rounds[row][-1].code = stop, code

    def resumed(self, row: int, output: str, status: str, ids: list[int]) -> None:
        last = self.rounds[row][-1]
        last.output, last.status, last.output_ids = output, status, ids
        self.rounds[row].append(Round(last.stop + len(ids)))  # type: ignore[operator]

    def trace(self, row: int, tokens: Sequence[int], decode: Callable[[Sequence[int]], str]) -> Trace:
        turns = []
        for r in self.rounds[row]:
            end = r.stop if r.stop is not None else len(tokens)
            turn: dict[str, Any] = {"text": decode(tokens[r.start:end])}
            if r.output is not None:
                turn |= {"code": r.code, "output": r.output, "status": r.status}
            turns.append(turn)
        return Trace(decode(tokens), turns)


class ToolSession:
    """Runs the cells of stopped rows in the sandbox and turns outputs into tokens (see the module doc).
    `run_cells(traces) -> list[Cells]` is an `Executor`'s; started lazily with `timeout` and `workers`."""

    def __init__(self, tokenizer: Any, *, max_new_tokens: int, max_rounds: int, output_tokens: int = OUTPUT_TOKENS,
                 timeout: float = 5.0, workers: int | None = None, executor: Any = None):
        if max_rounds < 1:
            raise ValueError("max_rounds must be at least 1")
        self.tokenizer, self.new, self.max_rounds, self.output_tokens = tokenizer, max_new_tokens, max_rounds, output_tokens
        self.timeout, self.workers, self.executor = timeout, workers, executor
        self.thread = ThreadPoolExecutor(max_workers=1)  # one sandbox batch at a time, in order
        self._ticks: Any = None

    def ticks(self) -> Any:
        """Per token id, whether its text holds a backtick (numpy bool; the last entry, False, for
        ids past the vocabulary): a span without one cannot hold the marker, nor need decoding."""
        if self._ticks is None:
            import numpy as np

            pieces = self.tokenizer.convert_ids_to_tokens(list(range(len(self.tokenizer))))
            self._ticks = np.array([p is not None and ("`" in p or p == "<0x60>") for p in pieces] + [False])
        return self._ticks

    @property
    def extra_tokens(self) -> int:
        """Cache slots a row may need beyond its generated tokens: the outputs of its rounds."""
        return (self.max_rounds - 1) * self.output_tokens

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def find_stop(self, ids: Sequence[int], start: int, begin: int, end: int) -> int | None:
        """The first `stop` in (begin, end] where the round's text (from `start`) reaches the marker:
        `STOP` in the decoded `WINDOW` tokens before `stop`. One decode covers the span; the exact
        place is looked for only where it holds the marker."""
        begin = max(begin, start)
        if end <= begin or STOP not in self.decode(ids[max(start, begin + 1 - WINDOW):end]):
            return None
        return next(s for s in range(begin + 1, end + 1) if STOP in self.decode(ids[max(start, s - WINDOW):s]))

    def cells(self, rows: Rows, row: int, ids: Sequence[int], stop: int) -> list[str] | None:
        """The cells to run for a row stopped at `stop`; None where it ends there instead: no code cell
        right before the marker, its last round, or no generated token left."""
        rounds = len(rows.rounds[row])
        if rounds >= self.max_rounds or stop - rows.fed(row) >= self.new:
            return None
        cells = open_cells(self.decode(ids[:stop]))
        if cells:
            rows.stopped(row, stop, cells[-1])
        return cells or None

    def _executor(self) -> Any:
        if self.executor is None:
            from solvers.executor import Executor

            self.executor = Executor(workers=self.workers, timeout=self.timeout)
        return self.executor

    def outputs(self, traces: list[list[str]]) -> list[tuple[str, str]]:
        """(output shown, sandbox status) per trace."""
        return [(output_text(c), c.status.value) for c in self._executor().run_cells(traces)]

    def run(self, traces: list[list[str]]) -> list[tuple[str, str, list[int]]]:
        """(output shown, sandbox status, its tokens) per trace."""
        return [(text, status, self.injection(text)) for text, status in self.outputs(traces)]

    def submit(self, traces: list[list[str]]) -> Future[list[tuple[str, str]]]:
        """`outputs` in the session's thread (tokenizing stays with the caller: a fast tokenizer is
        not to be used from two threads at once)."""
        return self.thread.submit(self.outputs, traces)

    def injection(self, output: str) -> list[int]:
        """The tokens that follow the row's marker: the output (cut with `fit`, and shorter still where
        its tokens pass `output_tokens`) and the closing fence, as `solvers.tir.append_output` writes them."""
        limit = OUTPUT_CHARS
        while True:
            ids = self.tokenizer(f"\n{fit(output, limit)}\n```\n", add_special_tokens=False)["input_ids"]
            if len(ids) <= self.output_tokens or limit <= 16:
                return ids[: self.output_tokens]
            limit = limit * self.output_tokens // len(ids) - 1

    def close(self) -> None:
        self.thread.shutdown(wait=True)
        if self.executor is not None:
            self.executor.close()
            self.executor = None


@dataclass
class Said:
    """One round of a writer that works on text (a teacher backend, vLLM)."""

    text: str
    stopped: bool  # ended at the stop sequence (not cut short by the token limit)
    tokens: int = 0  # tokens it generated (0: not reported)


def text_rounds(first: dict[Any, Said], more: Callable[[list[tuple[Any, str, int]]], list[Said]],
                session: ToolSession) -> dict[Any, Trace]:
    """Rounds of writers that continue a text: where one stopped right after a code cell, the cells
    run (one sandbox batch per round) and `more([(key, trace so far with the output, tokens left)])`
    asks for the continuations; at most `session.max_rounds` rounds, `session.new` tokens in all."""
    from solvers.tir import append_output

    text = {k: s.text for k, s in first.items()}
    turns: dict[Any, list[dict[str, Any]]] = {k: [{"text": s.text}] for k, s in first.items()}
    used = {k: s.tokens for k, s in first.items()}
    last = dict(first)
    for _ in range(session.max_rounds - 1):
        stopped = [(k, cells) for k, s in last.items()
                   if s.stopped and (used[k] < session.new) and (cells := open_cells(text[k]))]
        if not stopped:
            break
        asks = []
        for (k, cells), (output, status) in zip(stopped, session.outputs([c for _, c in stopped])):
            turns[k][-1] |= {"code": cells[-1], "output": output, "status": status}
            text[k] = append_output(text[k], output)
            asks.append((k, text[k], session.new - used[k]))
        last = dict(zip([k for k, _ in stopped], more(asks)))
        for k, said in last.items():
            text[k] += said.text
            used[k] += said.tokens
            turns[k].append({"text": said.text})
    return {k: Trace(text[k], turns[k]) for k in first}


def _stop_criterion(session: ToolSession, rows: Rows, open_rows: list[int], tokens: list[list[int]], start: int,
                    budgets: list[int], stops: dict[int, int]) -> Any:
    """A per-row `StoppingCriteria` of one `generate` round: a row stops at the marker (tool rows) or
    where its token budget ends; `stops[row]` = its new-token count at the marker."""
    import torch
    from transformers import StoppingCriteria

    class Stop(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            made = input_ids.shape[1] - start
            done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
            for j, row in enumerate(open_rows):
                if made >= budgets[j]:
                    done[j] = True
                if rows.tools[row] and row not in stops:
                    ids = tokens[row] + input_ids[j, start:].tolist()
                    stop = session.find_stop(ids, rows.start(row), len(ids) - 1, len(ids))
                    if stop is not None:
                        stops[row] = stop
                        done[j] = True
            return done

    return Stop()


def _left_pad(seqs: list[list[int]], pad: int) -> tuple[Any, Any]:
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for j, s in enumerate(seqs):
        if s:
            ids[j, width - len(s):] = torch.tensor(s)
            mask[j, width - len(s):] = 1
    return ids, mask


def generate_rounds(model: Any, enc: dict[str, Any], kwargs: dict[str, Any], session: ToolSession,
                    tools: Sequence[bool], *, causal: bool, eos: Sequence[int], pad: int,
                    on_round: Callable[[list[int], list[int], int], None] | None = None) -> tuple[list[list[int]], Rows]:
    """Tool-integrated decoding through `model.generate` (see the module doc): the new tokens of each
    row (outputs included, EOS kept) and its `Rows` record. `enc`: the padded prompt batch (one row per
    sequence); `kwargs`: `generate`'s (max_new_tokens is the budget per row over all rounds);
    `on_round(open rows, their generated tokens so far, the round's input length)` lets a logits
    processor follow the rows (`script.Script`)."""
    import torch

    rows = Rows(tools)
    batch, new = enc["input_ids"].shape[0], kwargs["max_new_tokens"]
    tokens: list[list[int]] = [[] for _ in range(batch)]
    prompts = [ids[m.bool()].tolist() for ids, m in zip(enc["input_ids"], enc["attention_mask"])]
    open_rows = list(range(batch))
    device = enc["input_ids"].device
    while open_rows:
        budgets = [new - (len(tokens[r]) - rows.fed(r)) for r in open_rows]
        sub = {"input_ids": enc["input_ids"][open_rows], "attention_mask": enc["attention_mask"][open_rows]}
        if causal:
            ids, mask = _left_pad([prompts[r] + tokens[r] for r in open_rows], pad)
            sub = {"input_ids": ids.to(device), "attention_mask": mask.to(device)}
            start = ids.shape[1]
        elif any(tokens[r] for r in open_rows):
            ids, mask = _left_pad([[model.config.decoder_start_token_id] + tokens[r] for r in open_rows], pad)
            sub |= {"decoder_input_ids": ids.to(device), "decoder_attention_mask": mask.to(device)}
            start = ids.shape[1]
        else:
            start = 1
        stops: dict[int, int] = {}
        stop = _stop_criterion(session, rows, open_rows, tokens, start, budgets, stops)
        round_kw = {**kwargs, "max_new_tokens": max(budgets)}
        if "min_new_tokens" in kwargs:
            round_kw["min_new_tokens"] = max(budgets)
        if on_round is not None:
            on_round(open_rows, [len(tokens[r]) - rows.fed(r) for r in open_rows], start)
        with torch.inference_mode():
            out = model.generate(**sub, **round_kw, stopping_criteria=[stop])
        again: list[int] = []
        traces: list[list[str]] = []
        for j, r in enumerate(open_rows):
            made = out[j, start:].tolist()[: budgets[j]]
            end = next((k + 1 for k, t in enumerate(made) if t in eos), len(made))
            if r in stops:
                end = min(end, stops[r] - len(tokens[r]))
            tokens[r] += made[:end]
            cells = session.cells(rows, r, tokens[r], stops[r]) if r in stops else None
            if cells is not None:
                again.append(r)
                traces.append(cells)
        for r, (text, status, ids) in zip(again, session.run(traces) if traces else []):
            rows.resumed(r, text, status, ids)
            tokens[r] += ids
        open_rows = again
    return tokens, rows


__all__ = ["OUTPUT_TOKENS", "Rows", "Said", "ToolPrompt", "ToolSession", "Trace", "generate_rounds", "output_text",
           "text_rounds"]

"""Tool-integrated reasoning with any teacher: multi-round prompting, code run between the rounds.

A TIR request goes out as usual (n samples), stopping at `solvers.tir.STOP`. Each sample that
stopped right after a code cell has the cells of its trace run in the sandbox (all of them, in
order, in one fresh namespace: state carried like a notebook), the last cell's output appended
(`solvers.tir.append_output`: cut to a head and a tail, the error line on an exception), and goes
on as its own request (n=1) that continues from `Request.prefix`, the trace so far. A sample ends
when its text does not end in an open cell (it answered, or wrote its own output block), when it
failed (truncated, refused, ...), when the sandbox refused its code (timeout, memory, forbidden:
the check then says so), or after `max_rounds` rounds, as it is.

Every round is its own journaled request, keyed by the run's request key, the sample, the round
and a hash of the prefix: a rerun replays the rounds already received (running their cells again
to rebuild the same prefix) and pays only for the rest.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from distill.teachers.base import Completion, Request
from distill.teachers.batching import Batcher
from solvers.outcome import Status
from solvers.tir import STOP, append_output, open_cells, parse, shown


def uses_tools(thought: str) -> bool:
    """Whether the thought's writer runs code between rounds (the registry's `Thought.tools`)."""
    from distill.thoughts import get_thought

    return get_thought(thought).tools


CELL_BATCH = 256  # traces whose cells run per call into the sandbox thread

# (key, request) -> (completions, whether the teacher was asked): the journal's answer, paid by the caller.
Answer = Callable[[str, Request], Awaitable[tuple[list[Completion], bool]]]


def round_key(key: str, sample: int | None, round_: int, prefix: str) -> str:
    """The journal key of one round of one sample (round 1: all samples at once, `sample` None)."""
    content = [key, sample, round_, hashlib.sha256(prefix.encode("utf-8", "surrogatepass")).hexdigest()]
    return hashlib.sha256(json.dumps(content).encode()).hexdigest()[:24]


def trace_key(key: str, max_rounds: int) -> str:
    """The key a run's finished traces are written under: another `max_rounds` writes them anew
    (replaying the rounds they share from the journal)."""
    return hashlib.sha256(json.dumps([key, "max-rounds", max_rounds]).encode()).hexdigest()[:24]


def tool_stop(stop: tuple[str, ...] | list[str]) -> list[str]:
    """A TIR prompt's stop strings, with the cell marker whether or not the prompt file lists it."""
    return list(dict.fromkeys([*stop, STOP]))


@dataclass
class Trace:
    completion: Completion  # text: the whole trace; tokens summed over its rounds; the last round's finish
    rounds: int

    def meta(self) -> dict[str, Any]:
        """What a record keeps to replay the trace: its turns (text, code, output) and rounds."""
        turns = parse(self.completion.text) if self.completion.text is not None else []
        return {"turns": [t.to_dict() for t in turns], "rounds": self.rounds}


class CellRunner:
    """Runs the cells of stopped traces in the sandbox, gathered into batches run in one worker
    thread (the executor is not shared between threads), so the event loop goes on meanwhile."""

    def __init__(self, timeout: float, workers: int | None):
        self.timeout, self.workers = timeout, workers
        self.executor: Any = None  # a solvers.executor.Executor, opened on first use
        self.lock, self.closed = threading.Lock(), False
        self._batcher: Batcher[list[str], str | None] = Batcher(self._run, lambda: CELL_BATCH)

    async def output(self, cells: list[str]) -> str | None:
        """What the last of `cells` shows after the others ran before it; None where the sandbox
        refused the code (timeout, memory, forbidden operation)."""
        return await self._batcher(cells)

    def _run(self, traces: list[list[str]]) -> list[str | None]:
        """(In a worker thread.) A run cancelled meanwhile may close the runner: nothing opens after."""
        with self.lock:
            if self.closed:
                raise RuntimeError("the cell runner is closed")
            if self.executor is None:
                from solvers.executor import Executor

                self.executor = Executor(workers=self.workers, timeout=self.timeout)
            executor = self.executor
        runs = executor.run_cells(traces)
        return [shown(run.outputs[-1]) if run.status is Status.OK and len(run.outputs) == len(cells) else None
                for cells, run in zip(traces, runs)]

    def close(self) -> None:
        with self.lock:
            self.closed = True
            executor, self.executor = self.executor, None
        if executor is not None:
            executor.close()


class Rounds:
    """The rounds of TIR requests against one teacher, their cells run by one `CellRunner`."""

    def __init__(self, max_rounds: int, timeout: float, workers: int | None):
        self.max_rounds = max_rounds
        self.cells = CellRunner(timeout, workers)

    async def traces(self, request: Request, key: str, answer: Answer) -> tuple[list[Trace], int]:
        """The `request.n` finished traces of a request, and the number of rounds sent to the teacher
        (the others came from the journal)."""
        first, sent = await answer(round_key(key, None, 1, ""), request)
        done = await asyncio.gather(*(self._go_on(request, key, i, c, answer) for i, c in enumerate(first)))
        return [trace for trace, _ in done], int(sent) + sum(n for _, n in done)

    async def _go_on(self, request: Request, key: str, sample: int, got: Completion, answer: Answer) -> tuple[Trace, int]:
        """Sample `sample` from its first round to its end; and the rounds sent for it."""
        prefix, rounds, sent = "", 1, 0
        prompt_tokens, completion_tokens = got.prompt_tokens, got.completion_tokens
        while True:
            text = prefix + (got.text or "")
            cells = open_cells(text) if got.error is None and rounds < self.max_rounds else None
            output = await self.cells.output(cells) if cells else None
            if output is None:
                break
            prefix = append_output(text, output)
            rounds += 1
            nxt, asked = await answer(round_key(key, sample, rounds, prefix), replace(request, n=1, prefix=prefix))
            got, sent = nxt[0], sent + asked
            prompt_tokens, completion_tokens = prompt_tokens + got.prompt_tokens, completion_tokens + got.completion_tokens
        whole = Completion(text if got.text is not None or prefix else None, got.finish_reason, prompt_tokens,
                           completion_tokens, got.error)
        return Trace(whole, rounds), sent

    def close(self) -> None:
        self.cells.close()

"""Thoughts: the ways a rationale can be written, one registry entry each.

An entry holds everything a stage needs to know about a thought: how to cut the rationale out
of a model's raw text, how to check a batch of rationales (open a checker), the few-shot prompt
file the teacher gets, the default student cue, and the failure classes its checker reports.
Every stage and the CLI ask this registry; adding a thought is one `register_thought` call plus
its prompt file (docs/thoughts.md shows a worked example).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from distill.registry import Registry
from solvers.grading import cot_outcome
from solvers.outcome import Outcome, Status


class BatchCheck(Protocol):
    """An open checker: outcomes for a batch of rationales, in order; `close` frees its resources."""

    def check(self, rationales: Sequence[str]) -> list[Outcome]: ...

    def close(self) -> None: ...


CheckerFactory = Callable[[float, "int | None"], BatchCheck]  # (timeout per rationale, worker processes)


@dataclass(frozen=True)
class Thought:
    name: str
    extract: Callable[[str], str]  # raw model text (already cut at a next few-shot item) -> rationale
    open_checker: CheckerFactory
    cue: str  # default student cue: the text after which the student writes this thought ({question})
    prompt: str | os.PathLike  # few-shot prompt file: a name under prompts/, or a path
    failures: tuple[str, ...] = ()  # failure classes its checker reports, besides "ok"
    description: str = ""
    tools: bool = False  # writes code cells as it goes: decoding stops at solvers.tir.STOP to run them

    def prompt_path(self) -> Path:
        from distill.resources import prompt_file

        return prompt_file(self.prompt)


class PerRationale:
    """A checker that needs no resources: one function applied to each rationale."""

    def __init__(self, one: Callable[[str], Outcome]):
        self.one = one

    def check(self, rationales: Sequence[str]) -> list[Outcome]:
        return [self.one(text) for text in rationales]

    def close(self) -> None:
        pass


THOUGHTS: Registry[Thought] = Registry("thought")


def register_thought(thought: Thought, *, replace: bool = False) -> Thought:
    return THOUGHTS.register(thought.name, thought, replace=replace)


def get_thought(name: str) -> Thought:
    return THOUGHTS.get(name)


def thought_names() -> list[str]:
    return THOUGHTS.names()


def parse_thoughts(value: str | Sequence[str] | None, *, default: Sequence[str] = ()) -> list[str]:
    """`"pot,eot"` or `["pot", "eot,cot"]` -> a list of known thoughts, in order, without repeats."""
    if value is None or value == "" or value == ():
        return list(default)
    parts = [value] if isinstance(value, str) else list(value)
    names = [t.strip().lower() for p in parts for t in p.split(",") if t.strip()]
    for name in names:
        get_thought(name)  # an unknown thought is an InputError listing the known ones
    return list(dict.fromkeys(names))


# The three thoughts of the Equation-of-Thought paper.
def _open_pot(timeout: float, workers: int | None) -> BatchCheck:
    from solvers.executor import Executor

    executor = Executor(workers=workers, timeout=timeout)

    class _Pool:
        def check(self, rationales: Sequence[str]) -> list[Outcome]:
            return executor.run_many(list(rationales))

        def close(self) -> None:
            executor.close()

    return _Pool()


def _open_eot(timeout: float, workers: int | None) -> BatchCheck:
    from solvers.equations import solve_eot

    return PerRationale(lambda text: solve_eot(text, timeout=timeout))


TIR_TIME_FACTOR = 3  # a trace's cells share one wall-clock limit: this many programs' worth


class _TraceCheck:
    """TIR: every trace's cells run again in a fresh namespace (one sandbox fork per trace), their
    recorded outputs compared with what they print now, then the final answer read."""

    def __init__(self, timeout: float, workers: int | None):
        from solvers.executor import Executor

        self.executor = Executor(workers=workers, timeout=TIR_TIME_FACTOR * timeout)

    def check(self, rationales: Sequence[str]) -> list[Outcome]:
        from solvers.tir import cells_of, check_trace, parse

        runs = self.executor.run_cells([cells_of(parse(text)) for text in rationales])
        return [check_trace(text, cells) for text, cells in zip(rationales, runs)]

    def close(self) -> None:
        self.executor.close()



def _register_builtins() -> None:
    from distill.teachers.extract import cot_rationale, eot_rationale, pot_rationale, tir_rationale

    register_thought(Thought(
        "cot", cot_rationale, lambda timeout, workers: PerRationale(cot_outcome),
        "Question: {question}\nLet's think step by step.\n", "cot.yaml",
        (Status.NO_ANSWER.value, Status.NON_NUMERIC.value),
        "chain of thought: steps in words, ending `The answer is N.` (MATH: the answer in \\boxed{})",
    ))
    register_thought(Thought(
        "pot", pot_rationale, _open_pot, "Question: {question}\nLet\u2019s break down the code step by step\n", "pot.yaml",
        tuple(s.value for s in (Status.SYNTAX, Status.RUNTIME, Status.TIMEOUT, Status.MEMORY, Status.FORBIDDEN,
                                Status.NO_ANSWER, Status.NON_NUMERIC)),
        "program of thought: Python that assigns `ans`, run in the sandbox",
    ))
    register_thought(Thought(
        "eot", eot_rationale, _open_eot, "Question: {question}\nSystem of linear equations: (Do not simplify)\n",
        "eot.yaml",
        tuple(s.value for s in (Status.PARSE, Status.UNSUPPORTED, Status.INCONSISTENT, Status.UNDER_DETERMINED,
                                Status.AMBIGUOUS, Status.NON_NUMERIC, Status.TIMEOUT)),
        "equation of thought: an equation system ending `ans = name`, solved with our SymPy-based solver",
    ))
    register_thought(Thought(
        "tir", tir_rationale, _TraceCheck, "Question: {question}\nLet's reason and run code as we go.\n", "tir.yaml",
        tuple(s.value for s in (Status.OUTPUT_MISMATCH, Status.NO_ANSWER, Status.NON_NUMERIC, Status.TIMEOUT,
                                Status.FORBIDDEN, Status.MEMORY, Status.SYNTAX, Status.RUNTIME)),
        "tool-integrated reasoning: text with ```python cells and their ```output, ending in \\boxed{} (ToRA)",
        tools=True,
    ))


_register_builtins()

__all__ = ["BatchCheck", "PerRationale", "THOUGHTS", "Thought", "get_thought", "parse_thoughts", "register_thought",
           "thought_names"]

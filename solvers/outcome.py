"""The verdict every checker returns: a number (or None) and a status naming why not."""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum


class Status(str, Enum):
    """Failure classes shared by all checkers; `OK` means a numeric answer was produced."""

    OK = "ok"
    # CoT
    NO_ANSWER = "no-answer"
    NON_NUMERIC = "non-numeric"
    # PoT (sandboxed executor)
    SYNTAX = "syntax"
    RUNTIME = "runtime"
    TIMEOUT = "timeout"
    MEMORY = "memory"
    FORBIDDEN = "forbidden"
    # EoT (equation solver)
    PARSE = "parse"
    UNSUPPORTED = "unsupported"
    INCONSISTENT = "inconsistent"
    UNDER_DETERMINED = "under-determined"
    AMBIGUOUS = "ambiguous"
    # TIR: a recorded cell output that the cell's code does not print when run again
    OUTPUT_MISMATCH = "output-mismatch"

    def __str__(self) -> str:
        return self.value


Number = int | float


@dataclass(frozen=True)
class Outcome:
    """What a rationale computes. `prediction` is set exactly when `status` is OK, and is a finite
    number. `exact`, when set, is the answer as SymPy wrote it (`srepr`, checked by
    `solvers.sandbox.exact`): a PoT program whose answer is a SymPy value (Rational, sqrt, pi,
    Matrix, Interval...) carries it whether or not it is also a number. `latex`, when set, is the
    final answer as the rationale writes it (CoT: `solvers.mathans.extract_final`), which a gold
    that is not one number (MATH) is compared with; numeric golds never look at it."""

    prediction: Number | None
    status: Status
    detail: str = ""
    exact: str | None = None
    latex: str | None = None

    def __post_init__(self) -> None:
        # NaN / inf are not answers (and not JSON): whoever built this outcome, it says non-numeric.
        if isinstance(self.prediction, float) and not math.isfinite(self.prediction):
            object.__setattr__(self, "prediction", None)
            object.__setattr__(self, "status", Status.NON_NUMERIC)
            object.__setattr__(self, "detail", "answer is not a finite number")

    @classmethod
    def ok(cls, value: Number) -> "Outcome":
        return cls(value, Status.OK)

    @classmethod
    def fail(cls, status: Status, detail: str = "", exact: str | None = None) -> "Outcome":
        return cls(None, status, detail[:500], exact)

    @property
    def is_ok(self) -> bool:
        return self.status is Status.OK


@dataclass(frozen=True)
class Cells:
    """What the code cells of one tool-integrated trace did when run in order (as a notebook):
    per cell, what it printed (with the error line where it raised) and the repr of its last
    expression (None where it has none). `status` is OK unless the sandbox ended the trace
    (forbidden, memory, timeout...): then `outputs` holds the cells that ran before, if known."""

    outputs: tuple[tuple[str, str | None], ...]
    status: Status = Status.OK
    detail: str = ""

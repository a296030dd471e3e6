"""The verdict every checker returns: a number (or None) and a status naming why not."""
from __future__ import annotations

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

    def __str__(self) -> str:
        return self.value


Number = int | float


@dataclass(frozen=True)
class Outcome:
    """What a rationale computes. `prediction` is set exactly when `status` is OK."""

    prediction: Number | None
    status: Status
    detail: str = ""

    @classmethod
    def ok(cls, value: Number) -> "Outcome":
        return cls(value, Status.OK)

    @classmethod
    def fail(cls, status: Status, detail: str = "") -> "Outcome":
        return cls(None, status, detail[:500])

    @property
    def is_ok(self) -> bool:
        return self.status is Status.OK

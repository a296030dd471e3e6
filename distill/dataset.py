"""What a data set loader returns, and where the publishers' files live (shared by distill.data
and the loaders it registers, such as distill.math_data)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from distill.records import Record


@dataclass
class Skipped:
    id: str
    reason: str


@dataclass
class DataSet:
    name: str
    records: list[Record]
    skipped: list[Skipped] = field(default_factory=list)


def data_dir(explicit: str | os.PathLike | None = None) -> Path | None:
    """Where the publishers' files live, or None when no candidate exists."""
    candidates = [explicit, os.environ.get("DISTILL_DATA"), "shared/data", "../shared/data"]
    for cand in candidates:
        if cand and Path(cand).is_dir():
            return Path(cand)
    return None

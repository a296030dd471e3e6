"""Duplicate rationales: exact copies, and copies that differ only in whitespace or number spelling."""
from __future__ import annotations

import re
from collections.abc import Hashable
from decimal import Decimal

# A number as teachers write it: `1,000`, `1000.50`, `5.0` (thousands commas only in groups of 3,
# so `1,2,3` stays a list).
_NUMBER = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?")


def _canonical_number(m: re.Match[str]) -> str:
    return format(Decimal(m.group(0).replace(",", "")).normalize(), "f")


def normalise(text: str) -> str:
    """`text` with whitespace runs collapsed to one space and numbers canonical (`1,000.0` -> `1000`).

    Collapsing whitespace ignores Python indentation too: two programs that differ only there are
    taken as duplicates (rare in straight-line teacher programs).
    """
    return _NUMBER.sub(_canonical_number, " ".join(text.split()))


class Deduper:
    """Remembers the rationales seen per scope (e.g. question and thought) and names repeats."""

    def __init__(self) -> None:
        self._exact: set[tuple[Hashable, str]] = set()
        self._normalised: set[tuple[Hashable, str]] = set()

    def check(self, scope: Hashable, text: str) -> str | None:
        """None for a new rationale (now remembered), else "exact" or "normalised"."""
        exact, norm = (scope, text), (scope, normalise(text))
        if exact in self._exact:
            return "exact"
        self._exact.add(exact)
        if norm in self._normalised:
            return "normalised"
        self._normalised.add(norm)
        return None

"""Token usage and cost of a generation run, priced per model (prompts/prices.yaml)."""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from distill.records import InputError
from distill.resources import resource
from distill.teachers.base import Completion

DEFAULT_PRICES = resource("prompts", "prices.yaml")


@dataclass(frozen=True)
class Price:
    input: float = 0.0  # USD per million prompt tokens
    output: float = 0.0  # USD per million completion tokens


def find_price(teacher: str, path: str | os.PathLike | None = None) -> Price | None:
    """The price of an `openai:MODEL` teacher (longest matching key), zero for local teachers,
    None when the model is not listed (the ledger then reports tokens only)."""
    kind, _, model = teacher.partition(":")
    if kind != "openai":
        return Price()
    path = Path(path or DEFAULT_PRICES)
    try:
        table = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        keys = [k for k in table if model.startswith(str(k))]
        if not keys:
            return None
        entry = table[max(keys, key=len)]
        return Price(float(entry["input"]), float(entry["output"]))
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(f"cannot read prices: {exc}".splitlines()[0], path) from None


@dataclass
class Usage:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, prompt_tokens: int, completion_tokens: int, requests: int = 1) -> None:
        self.requests += requests
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens


@dataclass
class Ledger:
    """Usage of this run and of the whole output (earlier runs resumed from the journal)."""

    teacher: str
    price: Price | None
    run: Usage
    total: Usage

    @classmethod
    def start(cls, teacher: str, price: Price | None) -> "Ledger":
        return cls(teacher, price, Usage(), Usage())

    def paid(self, completions: Sequence[Completion]) -> None:
        """Count completions this run received (and paid for)."""
        for usage in (self.run, self.total):
            usage.add(sum(c.prompt_tokens for c in completions), sum(c.completion_tokens for c in completions))

    def resumed(self, completions: Sequence[Completion]) -> None:
        """Count completions an earlier run into the same output paid for."""
        self.total.add(sum(c.prompt_tokens for c in completions), sum(c.completion_tokens for c in completions))

    def cost(self, usage: Usage) -> float | None:
        if self.price is None:
            return None
        return (usage.prompt_tokens * self.price.input + usage.completion_tokens * self.price.output) / 1e6

    def to_dict(self) -> dict:
        return {
            "teacher": self.teacher,
            "price_per_million": asdict(self.price) if self.price else None,
            "run": {**asdict(self.run), "cost_usd": self.cost(self.run)},
            "total": {**asdict(self.total), "cost_usd": self.cost(self.total)},
        }

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")


def usage_text(ledger: "Ledger", usage: Usage) -> str:
    """`N prompt + M completion  $cost` for progress tables."""
    cost = ledger.cost(usage)
    return (f"{usage.prompt_tokens:,} prompt + {usage.completion_tokens:,} completion"
            + (f"  ${cost:.4f}" if cost is not None else "  (no price for this model)"))

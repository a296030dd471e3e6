"""Decontamination: find training questions that overlap a question of an evaluation set.

Questions are compared as sets of word n-grams (lowercased words; every number becomes `#`, so a
copy with the numbers changed, the way SVAMP and ASDiv vary problems, still matches). The score of
a pair is the overlap coefficient: shared n-grams / n-grams of the shorter question. A training
question is flagged when its best score against any evaluation question reaches the threshold.

Defaults (8-grams, 0.5), measured on GSM8K train against GSM8K test + SVAMP + ASDiv + MultiArith
(docs/mix.md): 15 of 7,473 train questions are flagged, nearly all the same problem as an
evaluation item with names and numbers changed. Exact 13-gram matching (the GPT-3 convention)
flags 9 and misses most of these rewrites; lowering the threshold to 0.3 flags 26 and starts to
catch shared stock phrases ("# on monday, # on tuesday, ...").
"""
from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from distill.data import load
from distill.records import InputError, Record

DEFAULT_EVAL_SETS = ("gsm8k:test", "svamp", "asdiv", "multiarith")
NGRAM = 8
THRESHOLD = 0.5

_WORD = re.compile(r"[a-z]+|\d+(?:\.\d+)?")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3})")

Gram = tuple[str, ...]


def words(text: str) -> list[str]:
    """Lowercased words with every number (`1,200`, `3.5`) replaced by `#`."""
    return ["#" if w[0].isdigit() else w for w in _WORD.findall(_THOUSANDS.sub("", text.lower()))]


def ngrams(text: str, n: int = NGRAM) -> set[Gram]:
    """The word n-grams of `text`; a text shorter than n is one gram (itself)."""
    w = words(text)
    if len(w) < n:
        return {tuple(w)} if w else set()
    return {tuple(w[i : i + n]) for i in range(len(w) - n + 1)}


@dataclass(frozen=True)
class Hit:
    eval_id: str  # e.g. "gsm8k:test/602"
    eval_question: str
    score: float


class EvalIndex:
    """The n-grams of evaluation questions, indexed once; `match` is then a few dict look-ups."""

    def __init__(self, records: Iterable[Record], n: int = NGRAM, threshold: float = THRESHOLD):
        if n < 1 or not 0 < threshold <= 1:
            raise InputError(f"decontamination needs n >= 1 and 0 < threshold <= 1 (got {n}, {threshold})")
        self.n, self.threshold = n, threshold
        self.records = list(records)
        self._sizes: list[int] = []
        self._index: dict[Gram, list[int]] = defaultdict(list)
        for i, rec in enumerate(self.records):
            grams = ngrams(rec.question, n)
            self._sizes.append(len(grams))
            for gram in grams:
                self._index[gram].append(i)

    @classmethod
    def load(
        cls,
        specs: Sequence[str] = DEFAULT_EVAL_SETS,
        *,
        n: int = NGRAM,
        threshold: float = THRESHOLD,
        data_root: str | os.PathLike | None = None,
    ) -> "EvalIndex":
        return cls((rec for spec in specs for rec in load(spec, data_root=data_root).records), n, threshold)

    def best(self, question: str) -> Hit | None:
        """The evaluation question with the highest overlap (the first one on ties)."""
        grams = ngrams(question, self.n)
        shared: Counter[int] = Counter()
        for gram in grams:
            shared.update(self._index.get(gram, ()))
        if not shared:
            return None
        score, i = max((k / min(len(grams), self._sizes[i]), -i) for i, k in shared.items())
        rec = self.records[-i]
        return Hit(rec.id, rec.question, score)

    def match(self, question: str) -> Hit | None:
        """The best hit when it reaches the threshold, else None."""
        hit = self.best(question)
        return hit if hit is not None and hit.score >= self.threshold else None

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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from distill.data import HUB_IDS, load
from distill.records import InputError, Record

DEFAULT_EVAL_SETS = ("gsm8k:test", "svamp", "asdiv", "multiarith")
# Evaluation sets added to the defaults when training data of their family is mixed in:
# {data set name: the sets}. A record's source names its set (`math:train`, `synth:math:train`).
FAMILY_EVAL_SETS: dict[str, tuple[str, ...]] = {"math": ("math:test", "math500"), "math500": ("math:test", "math500")}
NGRAM = 8
THRESHOLD = 0.5

_WORD = re.compile(r"[a-z]+|\d+(?:\.\d+)?")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3})")
_MATH_WORD = re.compile(r"\\[a-z]+|[a-z]+|\d+(?:\.\d+)?")
_ASY = re.compile(r"\[asy\].*?(?:\[/asy\]|$)", re.DOTALL)

Gram = tuple[str, ...]


def words(text: str) -> list[str]:
    """Lowercased words with every number (`1,200`, `3.5`) replaced by `#`."""
    return ["#" if w[0].isdigit() else w for w in _WORD.findall(_THOUSANDS.sub("", text.lower()))]


def ngrams(text: str, n: int = NGRAM, split: Callable[[str], list[str]] = words) -> set[Gram]:
    """The n-grams of the words `split` finds in `text`; a text shorter than n is one gram (itself)."""
    w = split(text)
    if len(w) < n:
        return {tuple(w)} if w else set()
    return {tuple(w[i : i + n]) for i in range(len(w) - n + 1)}


def default_eval_sets(sources: Iterable[str], base: Sequence[str] = DEFAULT_EVAL_SETS) -> tuple[str, ...]:
    """`base` plus the evaluation sets of every family a source belongs to (MATH data: math:test, math500)."""
    extra = [spec for source in set(sources) for part in source.lower().split(":")
             for spec in FAMILY_EVAL_SETS.get(part.partition("?")[0], ())]
    return tuple(dict.fromkeys([*base, *sorted(extra)]))


def math_words(text: str) -> list[str]:
    """Lowercased words, LaTeX commands and numbers as written, without `[asy]` drawing code: MATH
    problems that differ only in their numbers are different problems. (MATH train and test share
    many templates: against math:test + math500, with numbers as `#` 1,595 of the 7,498 train
    problems match at 0.5; this way 395 at 0.5, 101 at 0.8, 34 at 1.0; GSM8K train still 15.)"""
    return _MATH_WORD.findall(_ASY.sub(" ", text.lower()))


def split_of(spec: str) -> Callable[[str], list[str]]:
    """How the questions of an evaluation set are split into words: MATH sets keep their numbers."""
    name = spec.partition("?")[0].partition(":")[0].lower()
    return math_words if name in FAMILY_EVAL_SETS or name in HUB_IDS and HUB_IDS[name] in FAMILY_EVAL_SETS else words


@dataclass(frozen=True)
class Hit:
    eval_id: str  # the indexed text's id, e.g. "gsm8k:test/602"
    eval_question: str
    score: float


class NgramIndex:
    """Texts as sets of n-grams, indexed for look-ups by overlap; `match` is then a few dict look-ups.
    `split` turns a text into words (default: `words`, numbers as `#`)."""

    def __init__(self, n: int = NGRAM, threshold: float = THRESHOLD, split: Callable[[str], list[str]] = words):
        self.n, self.threshold, self.split = n, threshold, split
        self._ids: list[str] = []
        self._texts: list[str] = []
        self._sizes: list[int] = []
        self._index: dict[Gram, list[int]] = defaultdict(list)

    def add(self, text_id: str, text: str) -> None:
        grams = ngrams(text, self.n, self.split)
        for gram in grams:
            self._index[gram].append(len(self._ids))
        self._ids.append(text_id)
        self._texts.append(text)
        self._sizes.append(len(grams))

    def best(self, text: str) -> Hit | None:
        """The indexed text with the highest overlap (the first one on ties)."""
        grams = ngrams(text, self.n, self.split)
        shared: Counter[int] = Counter()
        for gram in grams:
            shared.update(self._index.get(gram, ()))
        if not shared:
            return None
        score, i = max((k / min(len(grams), self._sizes[i]), -i) for i, k in shared.items())
        return Hit(self._ids[-i], self._texts[-i], score)

    def match(self, text: str) -> Hit | None:
        """The best hit when it reaches the threshold, else None."""
        hit = self.best(text)
        return hit if hit is not None and hit.score >= self.threshold else None


class EvalIndex:
    """The n-grams of evaluation questions, indexed once: one NgramIndex per way of splitting
    (word-problem sets with numbers as `#`, MATH with numbers kept, see `split_of`); a training
    question is matched against each and the best hit counts."""

    def __init__(self, records: Iterable[Record], n: int = NGRAM, threshold: float = THRESHOLD,
                 split: Callable[[str], list[str]] = words):
        if n < 1 or not 0 < threshold <= 1:
            raise InputError(f"decontamination needs n >= 1 and 0 < threshold <= 1 (got {n}, {threshold})")
        self.n, self.threshold = n, threshold
        self.parts: list[NgramIndex] = []
        self.add_part(records, split)

    def add_part(self, records: Iterable[Record], split: Callable[[str], list[str]]) -> None:
        part = NgramIndex(self.n, self.threshold, split)
        for rec in records:
            part.add(rec.id, rec.question)
        self.parts.append(part)

    def match(self, text: str) -> Hit | None:
        """The best hit over the parts when it reaches the threshold, else None."""
        hits = [h for part in self.parts if (h := part.match(text)) is not None]
        return max(hits, key=lambda h: h.score) if hits else None

    @classmethod
    def load(
        cls,
        specs: Sequence[str] = DEFAULT_EVAL_SETS,
        *,
        n: int = NGRAM,
        threshold: float = THRESHOLD,
        data_root: str | os.PathLike | None = None,
    ) -> "EvalIndex":
        by_split: dict[Callable[[str], list[str]], list[str]] = {}
        for spec in specs:
            by_split.setdefault(split_of(spec), []).append(spec)
        groups = list(by_split.items()) or [(words, [])]
        index = cls((), n, threshold, groups[0][0])
        index.parts = []
        for split, group in groups:
            index.add_part((rec for spec in group for rec in load(spec, data_root=data_root).records), split)
        return index

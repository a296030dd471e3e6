"""Deterministic problem streams, train/test splits, and the lookup of a problem by its question.

Each (seed, family) has an endless stream of candidate problems; candidate k is drawn from its
own random generator, so streams do not depend on call order. A question belongs to the test
split when a stable hash of its text falls in the test bucket (1 in TEST_SHARE), else to train:
test questions can never equal train questions, whatever the seeds and sizes. A split's i-th
problem comes from family i mod F (round robin), so a shorter list is a prefix of a longer one; a
weight (`rates*3`) gives a family that many turns in each round.
"""
from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import replace
from urllib.parse import parse_qs

from distill.data import DataSet
from distill.records import InputError
from distill.world.builder import Builder, Redraw
from distill.world.families import FAMILIES
from distill.world.latex_families import LATEX_FAMILIES
from distill.world.latex_problem import LatexProblem
from distill.world.problem import Problem

ALL_FAMILIES = {**FAMILIES, **LATEX_FAMILIES}  # the default world is FAMILIES; a spec may name any
AnyProblem = Problem | LatexProblem

SPLITS = ("train", "test")
TEST_SHARE = 5  # one question in five is a test question
DEFAULT_SIZE = {"train": 2000, "test": 500}
MAX_REDRAWS = 1000

_BY_QUESTION: dict[str, AnyProblem] = {}  # every problem drawn in this process
_DRAWN: dict[tuple[int, str], int] = {}  # candidates of each stream already indexed


def stable_hash(*parts: object) -> int:
    return int.from_bytes(hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest(), "big")


def split_of(question: str) -> str:
    return "test" if stable_hash("split", question) % TEST_SHARE == 0 else "train"


def candidate(seed: int, family: str, k: int) -> AnyProblem:
    """The k-th candidate problem of a family's stream."""
    rng = random.Random(stable_hash("world", seed, family, k))
    for _ in range(MAX_REDRAWS):
        try:
            problem = ALL_FAMILIES[family](Builder(rng, family))
        except Redraw:
            continue
        _BY_QUESTION.setdefault(problem.question, problem)
        return problem
    raise RuntimeError(f"family {family!r} cannot draw a problem")  # a bug in the family's constraints


def _stream(seed: int, family: str, split: str) -> Iterator[AnyProblem]:
    seen: set[str] = set()
    k = 0
    while True:
        problem = candidate(seed, family, k)
        k += 1
        if split_of(problem.question) == split and problem.question not in seen:
            seen.add(problem.question)
            yield problem


def _rounds(families: list[str]) -> list[str]:
    """One round of the family cycle: `rates*3` takes three turns, spread over the round
    (`a*2, b` -> a, b, a)."""
    weights: dict[str, int] = {}
    for item in families:
        name, star, weight = item.partition("*")
        if name not in ALL_FAMILIES:
            raise InputError(f"unknown world family {name!r} (known: {', '.join(ALL_FAMILIES)})")
        if star and not (weight.isdigit() and int(weight) > 0):
            raise InputError(f"world family weight must be a positive whole number: {item!r}")
        weights[name] = weights.get(name, 0) + (int(weight) if star else 1)
    return [f for turn in range(max(weights.values())) for f, w in weights.items() if w > turn]


def generate_problems(split: str, n: int, seed: int = 0, families: list[str] | None = None) -> list[AnyProblem]:
    """The first `n` problems of a split, cycling through `families` (default: FAMILIES, the
    whole-number ones; `name*k` weights a family)."""
    if split not in SPLITS:
        raise InputError(f"world split must be one of {', '.join(SPLITS)}, not {split!r}")
    names = _rounds(list(families or FAMILIES))
    streams = {f: _stream(seed, f, split) for f in dict.fromkeys(names)}
    out = []
    for i in range(n):
        problem = next(streams[names[i % len(names)]])
        out.append(replace(problem, split=split, index=i, seed=seed))
    return out


def find(question: str, seeds: tuple[int, ...] = (0,), limit: int = 5000, chunk: int = 256) -> AnyProblem | None:
    """The problem with this question text: from those drawn so far, else by drawing further
    along every stream of `seeds`, up to `limit` candidates a stream."""
    question = question.strip()
    while question not in _BY_QUESTION:
        pending = [(s, f) for s in seeds for f in ALL_FAMILIES if _DRAWN.get((s, f), 0) < limit]
        if not pending:
            return None
        for key in pending:
            start = _DRAWN.get(key, 0)
            for k in range(start, min(start + chunk, limit)):
                candidate(key[0], key[1], k)
            _DRAWN[key] = min(start + chunk, limit)
    return _BY_QUESTION[question]


def load_world(spec: str) -> DataSet:
    """`world:train`, `world:test`, `world:train?n=2000&seed=1&families=ages,rates` (or `ages+rates`,
    which survives lists of comma-separated data sets such as `distill eval --data`; `rates*4+marbles`
    weights the families)."""
    name, _, query = spec.partition("?")
    split = name.partition(":")[2] or "train"
    try:
        params = {k: v[-1] for k, v in parse_qs(query, strict_parsing=bool(query)).items()}
        n = int(params.pop("n", DEFAULT_SIZE.get(split, 0)))
        seed = int(params.pop("seed", 0))
    except ValueError:
        raise InputError(f"bad world spec {spec!r} (expected e.g. world:train?n=2000&seed=1)") from None
    families = params.pop("families", "").replace(" ", ",").split(",") if "families" in params else None
    if params:
        raise InputError(f"unknown world parameters {sorted(params)} in {spec!r} (known: n, seed, families)")
    problems = generate_problems(split, n, seed, families)
    return DataSet(name=f"world:{split}", records=[p.to_record() for p in problems])

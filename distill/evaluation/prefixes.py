"""Which rows of a decode batch read their prompt's first tokens from another row's KV cache.

A question decoded with several thoughts is several prompts that differ only after the question. In a
causal model the keys and values of a prompt's first tokens depend on those tokens alone, so the rows'
caches hold the same prefix: each row follows a leader whose prompt begins as its own and reads the
common prefix from the leader's cache (`decode_attention`'s `share`), and a leader's followers are
launched beside it, so the reads after the leader's come from L2 instead of HBM. Decoding is bound by
reading the cache; on GSM8K with three thoughts the question is 57.5 of a prompt's 67.5 tokens.

Every row keeps its own full cache, so that a leader's row can be refilled (continuous batching): its
followers then join another leader, or read their own copies.
"""
from __future__ import annotations

from collections.abc import Sequence

MIN_SHARED = 16  # prompt tokens: a shorter common prefix is read from the row's own cache


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class Prefixes:
    """Host-side bookkeeping for one batch of `batch` rows, prompts left-padded to `length` slots."""

    def __init__(self, batch: int, length: int):
        self.length = length
        self.tokens: list[Sequence[int]] = [()] * batch  # each row's real prompt tokens
        self.leader = list(range(batch))  # a row leads itself unless it follows another
        self.shared = [0] * batch  # prompt tokens read from the leader's cache
        self.followers: dict[int, set[int]] = {}
        self.leaders: dict[tuple[int, ...], list[int]] = {}  # by their first MIN_SHARED tokens

    def assign(self, rows: Sequence[int], prompts: Sequence[Sequence[int]]) -> None:
        """`rows` now hold `prompts` (token ids, no padding): their old caches are gone."""
        for r in rows:
            self._leave(r)
        for r, tokens in zip(rows, prompts):
            self.tokens[r] = tokens
            self._join(r)

    def tables(self) -> tuple[list[int], list[int], list[int], list[int]]:
        """`decode_attention`'s share: (src, src_lo, shared, order) per row, as lists."""
        batch = len(self.leader)
        src_lo = [self.length - len(self.tokens[self.leader[r]]) for r in range(batch)]  # the leader's first prompt slot
        order = sorted(range(batch), key=lambda r: (self.leader[r], r))
        return list(self.leader), src_lo, list(self.shared), order

    def _leave(self, r: int) -> None:
        if self.leader[r] != r:
            self.followers[self.leader[r]].discard(r)
        else:
            key = tuple(self.tokens[r][:MIN_SHARED])
            if r in self.leaders.get(key, ()):
                self.leaders[key].remove(r)
        self.leader[r], self.shared[r] = r, 0
        for f in sorted(self.followers.pop(r, ())):  # they join another leader (or lead)
            self.leader[f], self.shared[f] = f, 0
            self._join(f)

    def _join(self, r: int) -> None:
        tokens = self.tokens[r]
        if len(tokens) < MIN_SHARED:
            return
        key = tuple(tokens[:MIN_SHARED])
        best, shared = max(((c, common_prefix(tokens, self.tokens[c])) for c in self.leaders.get(key, ())),
                           key=lambda pair: pair[1], default=(r, 0))
        if shared >= MIN_SHARED:
            self.leader[r], self.shared[r] = best, shared
            self.followers.setdefault(best, set()).add(r)
        else:
            self.leaders.setdefault(key, []).append(r)

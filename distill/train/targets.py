"""Target token ids, and which of them the student learns: not what an interpreter wrote.

A TIR target carries its code cells' outputs. At evaluation the student writes up to the `STOP`
marker (```` ```output ````) and the interpreter writes the rest of that block
(`solvers.tir.append_output`), so the student learns the reasoning, the code and the marker, and
the loss skips every `solvers.tir.output_spans` range: the output and its closing fence. A token
is skipped when it lies wholly inside such a range (a token that also holds the writer's text stays
trained). Targets without an output block are tokenised exactly as without this module.

Token positions come from the offset mapping of fast tokenizers (the text tokenised whole, as it
would be anyway); a tokenizer without offsets (ByT5's bytes) tokenises the pieces between the span
boundaries one by one and concatenates them, which splits a byte tokenizer's text the same way.
"""
from __future__ import annotations

from typing import Any

from solvers.tir import output_spans

Mask = list[bool] | None  # per target token: True where the student learns it; None: all of them


def encode_targets(tokenizer: Any, texts: list[str]) -> tuple[list[list[int]], list[Mask]]:
    """Token ids of each target (no special tokens) and its mask (None where no token is skipped)."""
    ids: list[list[int]] = tokenizer(texts, add_special_tokens=False)["input_ids"]
    masks: list[Mask] = [None] * len(texts)
    spans = {i: s for i, text in enumerate(texts) if (s := output_spans(text))}
    if not spans:
        return ids, masks
    encode = _by_offsets if getattr(tokenizer, "is_fast", False) else _by_pieces
    for i, (tokens, mask) in zip(spans, encode(tokenizer, [texts[i] for i in spans], list(spans.values()))):
        ids[i], masks[i] = tokens, mask
    return ids, masks


def _by_offsets(tokenizer: Any, texts: list[str], spans: list[list[tuple[int, int]]]) -> list[tuple[list[int], list[bool]]]:
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    return [(tokens, [not any(a <= s and e <= b for a, b in row) for s, e in offsets])
            for tokens, offsets, row in zip(encoded["input_ids"], encoded["offset_mapping"], spans)]


def _by_pieces(tokenizer: Any, texts: list[str], spans: list[list[tuple[int, int]]]) -> list[tuple[list[int], list[bool]]]:
    pieces, learned = [], []  # every text's pieces, in order, and whether each is the writer's
    for text, row in zip(texts, spans):
        cuts = [0, *(c for span in row for c in span), len(text)]
        pieces.append([text[a:b] for a, b in zip(cuts, cuts[1:])])
        learned.append([k % 2 == 0 for k in range(len(cuts) - 1)])
    flat = tokenizer([p for ps in pieces for p in ps], add_special_tokens=False)["input_ids"]
    out, at = [], 0
    for ps, keep in zip(pieces, learned):
        tokens, mask = [], []
        for piece, mine in zip(flat[at:at + len(ps)], keep):
            tokens += piece
            mask += [mine] * len(piece)
        out.append((tokens, mask))
        at += len(ps)
    return out

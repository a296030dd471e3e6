"""Length buckets and batches for decoding, chosen by a memory-traffic cost model.

Prompts are grouped into length buckets and each bucket into batches of one size that fit the
memory's budget of KV-cache tokens (the last batch is padded with copies); `plan_batches` picks the
buckets that minimise `plan_cost`.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from distill.evaluation.graphs import SEGMENT

CPU_TOKEN_BUDGET = 32_768
RESERVE_BYTES = 4 << 30  # prefill activations, logits, CUDA graph pools
# Cost model of a decode step on an H100 (benchmarks/decode_step.py: CodeT5-large shape, batch 1,304, CUDA
# graphs): cache reads at the copy bandwidth, and a floor of launches and small kernels.
BANDWIDTH = 2.9e12  # bytes/s
STEP_FLOOR_S = 5e-3
PREFILL_FLOPS = 5e14  # FLOP/s a prefill reaches (bf16 GEMMs of a few thousand tokens on an H100/H200)


@dataclass(frozen=True)
class Batch:
    indices: list[int]  # into the prompt list
    capacity: int  # the batch size of its bucket (static shapes pad up to it)
    length: int  # padded prompt length: its bucket's


def plan_batches(lengths: Sequence[int], *, max_new_tokens: int, samples: int, token_budget: int,
                 max_batch: int, pad_multiple: int = 1, step_cost: float = 0.0, expected: float | None = None,
                 prefill: float = 0.0) -> list[Batch]:
    """Length buckets and batches that minimise `plan_cost` within the memory budget.

    The prompts, longest first, are cut into buckets (runs of neighbours); a bucket pads to its longest
    prompt (rounded up to `pad_multiple`) and splits into equal batches, the fewest whose KV cache
    (sequences x (length + new tokens)) fits `token_budget`: one batch shape per bucket, so the static
    loop's graphs serve all its batches. Dynamic programming over at most 257 cut points (every
    prompt, or an even grid): a long outlier gets a small bucket of its own when that is cheaper than
    padding a big batch to its length. A prompt's samples share its batch, so a batch holds at least
    one prompt's `samples` sequences even where they alone exceed the budget. `expected`, `prefill`:
    the continuous-batching model of `_shape_cost`."""
    if not lengths:
        return []
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    padded = [max(1, math.ceil(lengths[i] / pad_multiple)) * pad_multiple for i in order]
    grid = math.ceil(len(order) / 256)
    cuts = list(range(0, len(order), grid)) + [len(order)]

    def bucket(i: int, j: int) -> tuple[float, int]:  # cost and batch size of the bucket order[i:j]
        fit = max(1, min(max_batch, token_budget // (padded[i] + max_new_tokens)) // samples)
        count = math.ceil((j - i) / fit)
        size = math.ceil((j - i) / count)
        return _shape_cost(count, size, padded[i], max_new_tokens=max_new_tokens, samples=samples, step_cost=step_cost,
                           expected=expected, prefill=prefill), size

    best: list[tuple[float, int, int]] = [(0.0, 0, 0)]  # per cut: (cost up to it, previous cut, batch size)
    for b in range(1, len(cuts)):
        best.append(min((best[a][0] + cost, a, size) for a in range(b) for cost, size in [bucket(cuts[a], cuts[b])]))
    spans, b = [], len(cuts) - 1
    while b:
        _, a, size = best[b]
        spans.append((cuts[a], cuts[b], size))
        b = a
    batches: list[Batch] = []
    for i, j, size in reversed(spans):
        batches += [Batch(order[s:min(s + size, j)], size, padded[i]) for s in range(i, j, size)]
    return batches


def plan_cost(batches: Sequence[Batch], *, max_new_tokens: int, samples: int, step_cost: float,
              expected: float | None = None, prefill: float = 0.0) -> float:
    """Modelled decoding cost of a plan, in KV-cache token reads (a decode step is bound by memory
    traffic): per step, `step_cost` (weights and the launch floor) plus the cache each sequence reads,
    its padded prompt and on average half the new tokens; each batch shape also warms up and
    captures its graphs, about two steps per segment. `expected`, `prefill`: see `_shape_cost`."""
    shapes = Counter((b.capacity, b.length) for b in batches)
    return sum(_shape_cost(count, size, length, max_new_tokens=max_new_tokens, samples=samples, step_cost=step_cost,
                           expected=expected, prefill=prefill)
               for (size, length), count in shapes.items())


def _shape_cost(count: int, size: int, length: int, *, max_new_tokens: int, samples: int, step_cost: float,
                expected: float | None = None, prefill: float = 0.0) -> float:
    """`plan_cost` of `count` batches of one shape (`size` prompts padded to `length`). With `expected`
    (the mean new tokens of a sequence that ends at EOS) the shape is one continuously refilled batch:
    its steps are its sequences' share of the tokens, then one tail as long as the longest, run at the
    whole batch's fixed cost; and each padded prompt token costs `prefill` (`prefill_cost`), a share that
    grows as sequences get shorter. Without, every sequence makes all `max_new_tokens`."""
    # The tail's steps are charged as full ones: its ended rows read one cache slot each, but they still pay
    # their rows of every GEMM, which this model does not count otherwise. Without `expected` it is empty.
    made = max_new_tokens if expected is None else min(expected, max_new_tokens)
    steps = count * made + (max_new_tokens - made) + 2 * math.ceil(max_new_tokens / SEGMENT)
    return steps * (step_cost + size * samples * (length + made / 2)) + count * size * samples * length * prefill


def step_cost(model: Any) -> float:
    """A decode step's fixed cost for `plan_cost`, in KV-cache token reads: reading the weights plus
    the launch floor (STEP_FLOOR_S at BANDWIDTH)."""
    element = model.dtype.itemsize
    weights = sum(p.numel() for p in model.parameters()) * element
    return (weights + STEP_FLOOR_S * BANDWIDTH) / kv_bytes_per_token(model.config, element)


def prefill_cost(model: Any) -> float:
    """A padded prompt token's prefill for `_shape_cost`, in KV-cache token reads: 2 FLOPs per weight
    the prompt goes through (a seq2seq model's encoder; all of a causal one) at PREFILL_FLOPS. Not the
    embeddings (a lookup) nor the output head (the last position only)."""
    body = getattr(model, "encoder", None) or model
    lookups = {id(p) for m in (model.get_input_embeddings(), model.get_output_embeddings()) if m is not None
               for p in m.parameters()}
    flops = 2 * sum(p.numel() for p in body.parameters() if id(p) not in lookups)
    return flops / PREFILL_FLOPS * BANDWIDTH / kv_bytes_per_token(model.config, model.dtype.itemsize)


def kv_bytes_per_token(config: Any, element_size: int) -> int:
    """KV-cache bytes per sequence position (decoder self-attention; for seq2seq also per source
    token of the cross-attention cache, which has the same size per position)."""
    layers = getattr(config, "num_decoder_layers", None) or config.num_hidden_layers
    heads = getattr(config, "num_key_value_heads", None) or getattr(config, "num_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or getattr(config, "d_kv", None) or config.hidden_size // config.num_attention_heads
    return 2 * layers * heads * head_dim * element_size


def memory_token_budget(model: Any) -> int:
    import torch

    if model.device.type != "cuda":
        return CPU_TOKEN_BUDGET
    free, _ = torch.cuda.mem_get_info(model.device)
    per_token = kv_bytes_per_token(model.config, model.dtype.itemsize)
    return max(1, int(free * 0.9 - RESERVE_BYTES) // per_token)

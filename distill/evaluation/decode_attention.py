"""Attention of one new query per row over a static KV cache, as one Triton kernel (the decode step).

Every row reads only its own filled span of the cache, slots `lo[b] <= slot < hi[b]` (a causal row:
its prompt after the left padding, then its new tokens; a T5 row: the tokens made so far; T5's
cross-attention: the source tokens), once, with the softmax done online in fp32: no mask or score
tensor is written, no key beyond a row's own length is read. T5's relative-position bias enters as
a per-head table over distances (`bias[h, hi - 1 - slot]`), built once per cache.

Why not SDPA: with a mask (left padding, T5's bias) PyTorch's fused kernels either refuse a single
query or read every slot of the cache up to the batch's longest row; decode is bound by reading the
cache, so the slots a row does not need are most of the cost late in a segment.

Triton ships with PyTorch's CUDA wheels; with `TRITON_INTERPRET=1` set before this module is first
imported, the same kernel runs on CPU tensors (the tests' equivalence check where no GPU is).
"""
from __future__ import annotations

import os
from typing import Any

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs: `available` says no and the steps keep SDPA
    triton = None


def available(device: Any) -> bool:
    """Whether the kernel is the default for a model on `device`: CUDA, with Triton."""
    return triton is not None and device.type == "cuda"


def runs(device: Any) -> bool:
    """Whether the kernel can run on `device` at all: CUDA, or any device under Triton's interpreter."""
    return available(device) or (triton is not None and os.environ.get("TRITON_INTERPRET") == "1")


if triton is not None:

    @triton.jit
    def _decode_kernel(Q, K, V, O, LO, HI, BIAS, scale, heads, group,
                       sqb, sqh, skb, skh, skn, svb, svh, svn, sob, soh, sbh,
                       D: tl.constexpr, BLOCK: tl.constexpr, HAS_BIAS: tl.constexpr):
        pid = tl.program_id(0)
        b, h = pid // heads, pid % heads
        kv = h // group
        lo, hi = tl.load(LO + b), tl.load(HI + b)
        d = tl.arange(0, D)
        q = tl.load(Q + b * sqb + h * sqh + d).to(tl.float32) * scale
        k_row, v_row = K + b * skb + kv * skh, V + b * svb + kv * svh
        m = tl.max(tl.full([BLOCK], float("-inf"), tl.float32), 0)  # running max, sum and output
        total = tl.sum(tl.zeros([BLOCK], tl.float32), 0)
        acc = tl.zeros([D], tl.float32)
        for start in range(lo, hi, BLOCK):
            n = start + tl.arange(0, BLOCK)
            inside = n < hi
            k = tl.load(k_row + n[:, None] * skn + d[None, :], mask=inside[:, None], other=0.0)
            v = tl.load(v_row + n[:, None] * svn + d[None, :], mask=inside[:, None], other=0.0)  # both reads in flight
            s = tl.sum(k.to(tl.float32) * q[None, :], 1)
            if HAS_BIAS:
                s += tl.load(BIAS + h * sbh + (hi - 1 - n), mask=inside, other=0.0)
            s = tl.where(inside, s, float("-inf"))
            new_m = tl.maximum(m, tl.max(s, 0))
            p = tl.exp(s - new_m)
            alpha = tl.exp(m - new_m)
            acc = acc * alpha + tl.sum(p[:, None] * v.to(tl.float32), 0)
            total = total * alpha + tl.sum(p, 0)
            m = new_m
        tl.store(O + b * sob + h * soh + d, (acc / total).to(O.dtype.element_ty))


# Launch shape by head dim: (elements of a K tile, warps); `benchmarks/decode_step.py --sweep` measures others.
TILES: dict[int, tuple[int, int]] = {128: (16384, 4), 64: (8192, 4)}  # best of the H200 sweep, 2026-12-02
DEFAULT_TILE = (8192, 4)


def decode_attention(q: Any, k: Any, v: Any, lo: Any, hi: Any, scale: float, bias: Any = None) -> Any:
    """q [batch, heads, 1, dim]; k, v [batch, kv heads, slots, dim] (any slot stride); lo, hi [batch]
    (int); bias None or [heads, distances] fp32. Returns [batch, 1, heads * dim], as `steps.attend`."""
    import torch

    batch, heads, _, dim = q.shape
    out = torch.empty(batch, heads, dim, dtype=q.dtype, device=q.device)
    assert k.stride(-1) == v.stride(-1) == q.stride(-1) == 1 and dim & (dim - 1) == 0, "unit-stride, power-of-2 heads"
    elements, warps = TILES.get(dim, DEFAULT_TILE)
    block = max(16, elements // dim)  # keys per iteration
    table = bias if bias is not None else out  # any pointer: the kernel reads it only with HAS_BIAS
    _decode_kernel[(batch * heads,)](
        q, k, v, out, lo, hi, table, scale, heads, heads // k.shape[1],
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), k.stride(2), v.stride(0), v.stride(1), v.stride(2),
        out.stride(0), out.stride(1), table.stride(0) if bias is not None else 0,
        D=dim, BLOCK=block, HAS_BIAS=bias is not None, num_warps=warps)
    return out.view(batch, 1, heads * dim)

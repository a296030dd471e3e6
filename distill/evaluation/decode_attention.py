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
import threading
from collections.abc import Callable
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
    wait()
    out = _attend(q, k, v, lo, hi, scale, bias)
    return out.view(q.shape[0], 1, q.shape[1] * q.shape[3])


def _attend(q: Any, k: Any, v: Any, lo: Any, hi: Any, scale: float, bias: Any, out: Any = None,
            warmup: bool = False) -> Any:
    import torch

    batch, heads, _, dim = q.shape
    out = torch.empty(batch, heads, dim, dtype=q.dtype, device=q.device) if out is None else out
    assert k.stride(-1) == v.stride(-1) == q.stride(-1) == 1 and dim & (dim - 1) == 0, "unit-stride, power-of-2 heads"
    elements, warps = TILES.get(dim, DEFAULT_TILE)
    block = max(16, elements // dim)  # keys per iteration
    table = bias if bias is not None else out  # any pointer: the kernel reads it only with HAS_BIAS
    args = (q, k, v, out, lo, hi, table, scale, heads, heads // k.shape[1],
            q.stride(0), q.stride(1), k.stride(0), k.stride(1), k.stride(2), v.stride(0), v.stride(1), v.stride(2),
            out.stride(0), out.stride(1), table.stride(0) if bias is not None else 0)
    options = {"D": dim, "BLOCK": block, "HAS_BIAS": bias is not None, "num_warps": warps}
    launch(_decode_kernel, (batch * heads,), args, options, warmup)
    return out


def launch(kernel: Any, grid: tuple[int, ...], args: tuple[Any, ...], options: dict[str, Any], warmup: bool) -> None:
    """Launch `kernel` over `grid`; with `warmup`, only compile it for these arguments (`compile_ahead`)."""
    if warmup:
        kernel.warmup(*args, grid=grid, **options)
    else:
        kernel[grid](*args, **options)


_compiling: list[threading.Thread] = []
_lock = threading.Lock()  # decoding threads may wait at once


def ahead(device: Any, compile: Callable[[], Any]) -> None:
    """Run `compile` (Triton warm-ups: compiling, launching nothing) in a thread while the caller goes on;
    on `device`, which Triton's cache is keyed by (a new thread's current device is the first GPU)."""
    import torch

    def run() -> None:
        with torch.cuda.device(device):
            compile()

    thread = threading.Thread(target=run, name="triton-compile", daemon=True)
    thread.start()
    with _lock:
        _compiling.append(thread)


def wait() -> None:
    """Let what `ahead` compiles finish (a kernel's first call, rather than compiling it a second time)."""
    with _lock:
        while _compiling:
            _compiling.pop().join()


def compile_ahead(device: Any, dtype: Any, heads: int, kv_heads: int, dim: int, bias: bool = False) -> None:
    """Compile the kernel for a model's attention shape in a thread, while the caller goes on (loading,
    planning, prefilling): on a machine that has not run it, Triton's compile (1.2 s for the 7B shape on
    an H200) would otherwise stall the first decode step. Triton specialises on whether each integer
    argument is a multiple of 16: the cache is made with 16 slots and with 17 (its strides, where the head
    dim is not a multiple of 16), and with `bias` the position-bias table likewise (its row stride). The
    tensors are made on the caller's thread; the thread only compiles, launching and allocating nothing."""
    import torch

    if not available(device):
        return
    q = torch.empty(1, heads, 1, dim, dtype=dtype, device=device)
    caches = [torch.empty(1, kv_heads, n, dim, dtype=dtype, device=device) for n in (16, 17)]  # slot strides too
    out, span = torch.empty(1, heads, dim, dtype=dtype, device=device), torch.zeros(1, dtype=torch.long, device=device)
    tables = [None] + ([torch.empty(heads, n, device=device) for n in (16, 17)] if bias else [])
    ahead(device, lambda: [_attend(q, k, k, span, span, 1.0, t, out, warmup=True) for k in caches for t in tables])

"""The elementwise work of a decode step as three Triton kernels: the residual add with the RMS norm after
it (LLaMA's and T5's), LLaMA's RoPE, and SwiGLU's SiLU(gate) * up.

HF's modules run these as chains of small kernels (RMSNorm: a cast, a square, a mean, an rsqrt, two
multiplies and a cast back; RoPE: slices, a negation, a concatenation, two multiplies and an add, for q
and for k), about 30 a layer: at a decode step's few rows each costs a launch and a pass over memory, and
together they took about 5 ms of a 46 ms 7B step (benchmarks/results/eval_gpu.md). Each kernel rounds to
the model's dtype where HF's chain does; in fp32, the sum's order in RMSNorm and the rsqrt and exp
intrinsics may differ from PyTorch's in the last bit.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from distill.evaluation.decode_attention import ahead, available, launch, triton, wait

BLOCK = 1024  # elements per program of the elementwise kernels

if triton is not None:
    import triton.language as tl

    @triton.jit
    def _add_rms_norm_kernel(X, DELTA, W, SUM, OUT, eps, n, HAS_DELTA: tl.constexpr, WIDTH: tl.constexpr):
        row = tl.program_id(0).to(tl.int64) * n
        cols = tl.arange(0, WIDTH)
        inside = cols < n
        x = tl.load(X + row + cols, mask=inside, other=0.0)
        if HAS_DELTA:  # the residual stream, rounded to its dtype as `x + delta` is
            x = (x.to(tl.float32) + tl.load(DELTA + row + cols, mask=inside, other=0.0).to(tl.float32)).to(x.dtype)
            tl.store(SUM + row + cols, x, mask=inside)
        xf = x.to(tl.float32)
        normed = (xf * tl.rsqrt(tl.sum(xf * xf, 0) / n + eps)).to(x.dtype)
        w = tl.load(W + cols, mask=inside, other=0.0)
        tl.store(OUT + row + cols, (w.to(tl.float32) * normed.to(tl.float32)).to(OUT.dtype.element_ty), mask=inside)

    @triton.jit
    def _rope_kernel(X, COS, SIN, OUT, total, width, DIM: tl.constexpr, BLOCK: tl.constexpr):
        at = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        inside = at < total
        d = at % width % DIM
        first = d < DIM // 2  # rotate_half: (-x2, x1)
        x = tl.load(X + at, mask=inside, other=0.0)
        other = tl.load(X + tl.where(first, at + DIM // 2, at - DIM // 2), mask=inside, other=0.0).to(tl.float32)
        trig = at // width * DIM + d
        cos = tl.load(COS + trig, mask=inside, other=0.0).to(tl.float32)
        sin = tl.load(SIN + trig, mask=inside, other=0.0).to(tl.float32)
        a = (x.to(tl.float32) * cos).to(x.dtype).to(tl.float32)
        b = (tl.where(first, -other, other) * sin).to(x.dtype).to(tl.float32)
        tl.store(OUT + at, (a + b).to(x.dtype), mask=inside)

    @triton.jit
    def _silu_mul_kernel(GATE, UP, OUT, total, BLOCK: tl.constexpr):
        at = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        inside = at < total
        g = tl.load(GATE + at, mask=inside, other=0.0)
        silu = (g.to(tl.float32) / (1.0 + tl.exp(-g.to(tl.float32)))).to(g.dtype)
        up = tl.load(UP + at, mask=inside, other=0.0)
        tl.store(OUT + at, (silu.to(tl.float32) * up.to(tl.float32)).to(g.dtype), mask=inside)


def add_rms_norm(x: Any, delta: Any, weight: Any, eps: float) -> tuple[Any, Any]:
    """`(s, norm(s))` with `s = x + delta` (`delta` None: `s = x`) and `norm` HF's LlamaRMSNorm; x, delta
    contiguous [..., n]."""
    import torch

    wait()
    total = torch.empty_like(x) if delta is not None else x
    out = torch.empty(x.shape, dtype=torch.promote_types(weight.dtype, x.dtype), device=x.device)
    _norm(x, delta, weight, eps, total, out)
    return total, out


def _norm(x: Any, delta: Any, weight: Any, eps: float, total: Any, out: Any, warmup: bool = False) -> None:
    n = x.shape[-1]
    args = (x, delta if delta is not None else x, weight, total, out, eps, n)
    options = {"HAS_DELTA": delta is not None, "WIDTH": triton.next_power_of_2(n), "num_warps": 8}
    launch(_add_rms_norm_kernel, (x.numel() // n,), args, options, warmup)


def rope(x: Any, cos: Any, sin: Any) -> Any:
    """HF's rotary embedding of `x` [batch, tokens, heads * dim] (a projection's output, before the heads
    are split) by `cos`, `sin` [batch, tokens, dim]; the result in the same layout."""
    import torch

    wait()
    out = torch.empty_like(x)
    _rope(x, cos.contiguous(), sin.contiguous(), out)
    return out


def _rope(x: Any, cos: Any, sin: Any, out: Any, warmup: bool = False) -> None:
    # no fused multiply-add: HF rounds x * cos before adding (in fp32 too, where the casts do not round)
    args = (x, cos, sin, out, x.numel(), x.shape[-1])
    options = {"DIM": cos.shape[-1], "BLOCK": BLOCK, "enable_fp_fusion": False}
    launch(_rope_kernel, (triton.cdiv(x.numel(), BLOCK),), args, options, warmup)


def silu_mul(gate: Any, up: Any) -> Any:
    """`silu(gate) * up` as LlamaMLP computes it, rounded to their dtype after each; both contiguous."""
    import torch

    wait()
    out = torch.empty_like(gate)
    _silu_mul(gate, up, out)
    return out


def _silu_mul(gate: Any, up: Any, out: Any, warmup: bool = False) -> None:
    args = (gate, up, out, gate.numel())
    launch(_silu_mul_kernel, (triton.cdiv(gate.numel(), BLOCK),), args, {"BLOCK": BLOCK}, warmup)


def compile_ahead(device: Any, dtype: Any, hidden: int, ff: int = 0, rope: tuple[int, int, int] | None = None) -> None:
    """Compile the kernels a model's step uses in a thread (see `decode_attention.compile_ahead`): the norm
    over `hidden`, SwiGLU over `ff` (0: none), RoPE over (q width, k width, head dim) (None: none). With 1
    row and with 16: sizes Triton tells apart by whether they are multiples of 16, where a width is not."""
    import torch

    if not available(device):
        return
    empty = lambda *shape: torch.empty(*shape, dtype=dtype, device=device)
    weight = empty(hidden)
    calls: list[Callable[[], None]] = []
    for rows in (1, 16):
        x = empty(rows, hidden)
        calls += [lambda x=x, delta=delta: _norm(x, delta, weight, 1e-6, x, x, warmup=True) for delta in (None, x)]
        if ff:
            wide = empty(rows, ff)
            calls.append(lambda wide=wide: _silu_mul(wide, wide, wide, warmup=True))
        if rope is not None:
            trig = empty(rows, rope[2])
            calls += [lambda proj=empty(rows, width), trig=trig: _rope(proj, trig, trig, proj, warmup=True)
                      for width in rope[:2]]
    ahead(device, lambda: [call() for call in calls])

"""T5 self-attention as one fused Triton kernel forward and three backward, the bias read in the kernel.

HF's T5 adds a learned relative-position bias to every self-attention score. Torch's kernels cannot take
a bias that needs a gradient, so SDPA (and the compiled math that compiled blocks run) materialises
batch x heads x queries x keys scores, softmax and dropout, forward and backward: about a quarter of an
H200 step of CodeT5-large (`benchmarks/results/train_gpu.md`). Here scores never leave the chip:

- forward: FlashAttention's online softmax over key blocks; the bias [heads, queries, keys] (one for the
  whole batch, as HF computes it) and the key padding mask are read per tile, causality is a flag, and
  dropout on the probabilities draws Philox numbers from (seed, row, position), so backward redraws the
  same mask instead of storing it;
- backward: one kernel for dK/dV (a program per key block), one for dQ (per query block), and one for
  the bias's gradient, a program per (head, query block, key block, slice of the batch) summing its
  tile in registers, the slices added after: no atomics and no scores in memory. Each recomputes the
  tile's probabilities from the saved log-sum-exp.
- packed batches: one row of examples back to back, each example's queries over its own keys (the
  kernels' sequence index counts examples, found by their cumulative lengths), the bias read at positions
  within the example; no padding to compute or mask (`pack`, distill's collator packing, `packing: auto` or `true`).
- tiles: Triton times a few shapes per kernel on first use (per head size and mask kind).

On an H200, CodeT5-large's training step ran 25% faster than on SDPA, with 16 GiB less memory
(`benchmarks/results/train_gpu.md`).

In padded batches cross-attention (T5's bias there is all zeros) goes to SDPA with the padding mask alone; in packed
batches (`pack`) it runs on these kernels with no bias, each target example over its own source. Importing this
module registers `t5-fused` with transformers; its mask function hands the kernel the 2D padding mask.
"""
import functools
import os
from typing import Any, Optional

import torch
import triton
import triton.language as tl
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface

NAME = "t5-fused"
HEAD_DIMS = (16, 32, 64, 128)
BLOCK = 64  # queries and keys per tile of the bias gradient


def _configs(*shapes: tuple[int, int, int, int]) -> list[triton.Config]:
    """Tile candidates (queries BM, keys BN, warps, stages) that Triton times on first use per head size and
    mask kind; Triton's interpreter gets the first alone (it would run every one)."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        shapes = shapes[:1]
    return [triton.Config({"BM": m, "BN": n}, num_warps=w, num_stages=st) for m, n, w, st in shapes]


TUNED_BY = ["D", "HAS_BIAS", "HAS_MASK", "CAUSAL", "DROPOUT", "VARLEN"]
# (BM, BN, warps, stages) per kernel; on an H200 (CodeT5-large, bf16) Triton chose 64x32 forward and for
# dQ, 32x64 or 16x128 for dK/dV
FORWARD_TILES = ((64, 64, 4, 3), (128, 64, 8, 3), (128, 32, 4, 3), (64, 32, 4, 4), (128, 128, 8, 2))
KV_TILES = ((64, 64, 4, 2), (32, 128, 4, 3), (64, 128, 8, 2), (32, 64, 4, 3), (16, 128, 4, 3))
Q_TILES = ((64, 64, 4, 2), (128, 32, 4, 3), (128, 64, 8, 2), (64, 32, 4, 3), (128, 128, 8, 2))


@triton.jit
def _rows(base, offs, stride, n, D: tl.constexpr):
    """Rows `offs` of a [tokens, D] slice whose rows lie `stride` apart; zeros from row `n` on."""
    return tl.load(base + offs[:, None] * stride + tl.arange(0, D)[None, :], mask=offs[:, None] < n, other=0.0)


@triton.jit
def _store_rows(base, offs, stride, n, value, D: tl.constexpr):
    tl.store(base + offs[:, None] * stride + tl.arange(0, D)[None, :], value.to(base.dtype.element_ty),
             mask=offs[:, None] < n)


@triton.jit
def _segment(Cu, b, length, VARLEN: tl.constexpr):
    """(first token, tokens) of sequence `b`: a packed example's bounds from the cumulative lengths `Cu`,
    or row `b` of a padded batch (its tokens from 0, `length` of them)."""
    start = 0
    tokens = length
    if VARLEN:
        start = tl.load(Cu + b)
        tokens = tl.load(Cu + b + 1) - start
    return start, tokens


@triton.jit
def _row_stats(LSE, Delta, base, offs_m, q_len):
    """Saved log-sum-exp (inf past the end: probabilities 0) and rowsum(dO * O) of the queries `offs_m`,
    whose first lies at `base`."""
    inside = offs_m < q_len
    return (tl.load(LSE + base + offs_m, mask=inside, other=float("inf")),
            tl.load(Delta + base + offs_m, mask=inside, other=0.0))


@triton.jit
def _scores(q, k, bias_base, mask_base, offs_m, offs_n, q_len, k_len, stride_bq, stride_bk, scale,
            HAS_BIAS: tl.constexpr, HAS_MASK: tl.constexpr, CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    """A tile's scores, fp32, -inf where the key is padding, past the end or (causal) in the future: the
    queries are the last `q_len` of the `k_len` positions (a decoder step reading its cache)."""
    s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
    if HAS_BIAS:
        inside = (offs_m[:, None] < q_len) & (offs_n[None, :] < k_len)
        s += tl.load(bias_base + offs_m[:, None] * stride_bq + offs_n[None, :] * stride_bk, mask=inside,
                     other=0.0).to(tl.float32)
    valid = offs_n[None, :] < k_len
    if HAS_MASK:
        valid = valid & (tl.load(mask_base + offs_n, mask=offs_n < k_len, other=0) != 0)[None, :]
    if CAUSAL:
        valid = valid & (offs_n[None, :] <= offs_m[:, None] + (k_len - q_len))
    return tl.where(valid, s, float("-inf"))


@triton.jit
def _kept(seed, bh, offs_m, key_start, k_len, p_drop, BN: tl.constexpr):
    """Dropout's keep mask of a tile: Philox keyed by (seed, batch x head). One Philox call gives four
    numbers, so a call counts each (query, four keys); the four are laid side by side."""
    quads = key_start // 4 + tl.arange(0, BN // 4)
    r0, r1, r2, r3 = tl.rand4x(seed + bh, offs_m[:, None] * tl.cdiv(k_len, 4) + quads[None, :])
    r = tl.reshape(tl.join(tl.join(r0, r1), tl.join(r2, r3)), (offs_m.shape[0], BN))
    return r >= p_drop


@triton.autotune(_configs(*FORWARD_TILES), TUNED_BY)
@triton.jit
def _forward(Q, K, V, Bias, Mask, Seed, CuQ, CuK, O, LSE,
             sqb, sqh, sqm, skb, skh, skn, svb, svh, svn, sbh, sbq, sbk, smb, sob, soh, som, slb, slh,
             heads, q_len, k_len, scale, p_drop,
             D: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_MASK: tl.constexpr,
             CAUSAL: tl.constexpr, DROPOUT: tl.constexpr, VARLEN: tl.constexpr, PRECISION: tl.constexpr):
    pid_m, bh = tl.program_id(0), tl.program_id(1)
    b, h = bh // heads, bh % heads
    q_start, q_len = _segment(CuQ, b, q_len, VARLEN)
    k_start, k_len = _segment(CuK, b, k_len, VARLEN)
    if pid_m * BM >= q_len:  # packed: past this example's queries (the grid covers the longest)
        return
    Q += b * sqb + h * sqh + q_start * sqm
    K += b * skb + h * skh + k_start * skn
    V += b * svb + h * svh + k_start * svn
    offs_m = pid_m * BM + tl.arange(0, BM)
    q = _rows(Q, offs_m, sqm, q_len, D)
    seed = tl.load(Seed) if DROPOUT else 0
    m_i = tl.full([BM], float("-inf"), tl.float32)
    l_i = tl.zeros([BM], tl.float32)
    acc = tl.zeros([BM, D], tl.float32)
    end = (pid_m + 1) * BM + (k_len - q_len) if CAUSAL else k_len  # later keys (and past k_len) are masked
    for start in range(0, end, BN):
        offs_n = start + tl.arange(0, BN)
        k = _rows(K, offs_n, skn, k_len, D)
        v = _rows(V, offs_n, svn, k_len, D)
        s = _scores(q, k, Bias + h * sbh, Mask + b * smb, offs_m, offs_n, q_len, k_len, sbq, sbk, scale,
                    HAS_BIAS, HAS_MASK, CAUSAL, PRECISION)
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # a row with no key yet: nothing to rescale
        p = tl.exp(s - m_safe[:, None])
        alpha = tl.exp(m_i - m_safe)
        l_i = l_i * alpha + tl.sum(p, 1)
        if DROPOUT:  # after the softmax: the normaliser sums the undropped probabilities
            p = tl.where(_kept(seed, bh, offs_m, start, k_len, p_drop, BN), p / (1.0 - p_drop), 0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new
    l_safe = tl.where(l_i == 0.0, 1.0, l_i)
    _store_rows(O + b * sob + h * soh + q_start * som, offs_m, som, q_len, acc / l_safe[:, None], D)
    lse = tl.where(l_i == 0.0, float("inf"), m_i + tl.log(l_safe))  # inf: every probability of the row is 0
    tl.store(LSE + b * slb + h * slh + q_start + offs_m, lse, mask=offs_m < q_len)


@triton.jit
def _tile_grads(q, k, v, do, lse, delta, seed, bh, bias_base, mask_base, offs_m, key_start, q_len, k_len,
                sbq, sbk, scale, p_drop, HAS_BIAS: tl.constexpr, HAS_MASK: tl.constexpr, CAUSAL: tl.constexpr,
                DROPOUT: tl.constexpr, PRECISION: tl.constexpr, BN: tl.constexpr):
    """A tile's (dropped probabilities, score gradients), recomputed from the saved log-sum-exp."""
    offs_n = key_start + tl.arange(0, BN)
    s = _scores(q, k, bias_base, mask_base, offs_m, offs_n, q_len, k_len, sbq, sbk, scale,
                HAS_BIAS, HAS_MASK, CAUSAL, PRECISION)
    p = tl.exp(s - lse[:, None])
    dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
    dropped = p
    if DROPOUT:
        kept = _kept(seed, bh, offs_m, key_start, k_len, p_drop, BN)
        dropped = tl.where(kept, p / (1.0 - p_drop), 0.0)
        dp = tl.where(kept, dp / (1.0 - p_drop), 0.0)
    return dropped, p * (dp - delta[:, None])


@triton.autotune(_configs(*KV_TILES), TUNED_BY)
@triton.jit
def _backward_kv(Q, K, V, Bias, Mask, Seed, CuQ, CuK, DO, LSE, Delta, DK, DV,
                 sqb, sqh, sqm, skb, skh, skn, svb, svh, svn, sbh, sbq, sbk, smb, sob, soh, som, slb, slh,
                 sgb, sgh, sgn, heads, q_len, k_len, scale, p_drop,
                 D: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_MASK: tl.constexpr,
                 CAUSAL: tl.constexpr, DROPOUT: tl.constexpr, VARLEN: tl.constexpr, PRECISION: tl.constexpr):
    pid_n, bh = tl.program_id(0), tl.program_id(1)
    b, h = bh // heads, bh % heads
    q_start, q_len = _segment(CuQ, b, q_len, VARLEN)
    k_start, k_len = _segment(CuK, b, k_len, VARLEN)
    if pid_n * BN >= k_len:  # packed: past this example's keys
        return
    Q += b * sqb + h * sqh + q_start * sqm
    DO += b * sob + h * soh + q_start * som
    stats = b * slb + h * slh + q_start
    offs_n = pid_n * BN + tl.arange(0, BN)
    k = _rows(K + b * skb + h * skh + k_start * skn, offs_n, skn, k_len, D)
    v = _rows(V + b * svb + h * svh + k_start * svn, offs_n, svn, k_len, D)
    seed = tl.load(Seed) if DROPOUT else 0
    dk = tl.zeros([BN, D], tl.float32)
    dv = tl.zeros([BN, D], tl.float32)
    begin = tl.maximum(pid_n * BN - (k_len - q_len), 0) // BM * BM if CAUSAL else 0  # earlier queries see none
    for start in range(begin, q_len, BM):
        offs_m = start + tl.arange(0, BM)
        q = _rows(Q, offs_m, sqm, q_len, D)
        do = _rows(DO, offs_m, som, q_len, D)
        lse, delta = _row_stats(LSE, Delta, stats, offs_m, q_len)
        dropped, ds = _tile_grads(q, k, v, do, lse, delta, seed, bh, Bias + h * sbh, Mask + b * smb, offs_m, pid_n * BN,
                                  q_len, k_len, sbq, sbk, scale, p_drop, HAS_BIAS, HAS_MASK, CAUSAL, DROPOUT, PRECISION, BN)
        dv += tl.dot(tl.trans(dropped.to(do.dtype)), do, input_precision=PRECISION)
        dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=PRECISION)
    _store_rows(DK + b * sgb + h * sgh + k_start * sgn, offs_n, sgn, k_len, dk * scale, D)
    _store_rows(DV + b * sgb + h * sgh + k_start * sgn, offs_n, sgn, k_len, dv, D)


@triton.autotune(_configs(*Q_TILES), TUNED_BY)
@triton.jit
def _backward_q(Q, K, V, Bias, Mask, Seed, CuQ, CuK, DO, LSE, Delta, DQ,
                sqb, sqh, sqm, skb, skh, skn, svb, svh, svn, sbh, sbq, sbk, smb, sob, soh, som, slb, slh,
                heads, q_len, k_len, scale, p_drop,
                D: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_MASK: tl.constexpr,
                CAUSAL: tl.constexpr, DROPOUT: tl.constexpr, VARLEN: tl.constexpr, PRECISION: tl.constexpr):
    pid_m, bh = tl.program_id(0), tl.program_id(1)
    b, h = bh // heads, bh % heads
    q_start, q_len = _segment(CuQ, b, q_len, VARLEN)
    k_start, k_len = _segment(CuK, b, k_len, VARLEN)
    if pid_m * BM >= q_len:
        return
    K += b * skb + h * skh + k_start * skn
    V += b * svb + h * svh + k_start * svn
    offs_m = pid_m * BM + tl.arange(0, BM)
    q = _rows(Q + b * sqb + h * sqh + q_start * sqm, offs_m, sqm, q_len, D)
    do = _rows(DO + b * sob + h * soh + q_start * som, offs_m, som, q_len, D)
    lse, delta = _row_stats(LSE, Delta, b * slb + h * slh + q_start, offs_m, q_len)
    seed = tl.load(Seed) if DROPOUT else 0
    dq = tl.zeros([BM, D], tl.float32)
    end = (pid_m + 1) * BM + (k_len - q_len) if CAUSAL else k_len  # later keys (and past k_len) are masked
    for start in range(0, end, BN):
        offs_n = start + tl.arange(0, BN)
        k = _rows(K, offs_n, skn, k_len, D)
        v = _rows(V, offs_n, svn, k_len, D)
        _, ds = _tile_grads(q, k, v, do, lse, delta, seed, bh, Bias + h * sbh, Mask + b * smb, offs_m, start,
                            q_len, k_len, sbq, sbk, scale, p_drop, HAS_BIAS, HAS_MASK, CAUSAL, DROPOUT, PRECISION, BN)
        dq += tl.dot(ds.to(k.dtype), k, input_precision=PRECISION)
    _store_rows(DQ + b * sob + h * soh + q_start * som, offs_m, som, q_len, dq * scale, D)


@triton.jit
def _backward_bias(Q, K, V, Bias, Mask, Seed, CuQ, CuK, DO, LSE, Delta, DBias,
                   sqb, sqh, sqm, skb, skh, skn, svb, svh, svn, sbh, sbq, sbk, smb, sob, soh, som, slb, slh,
                   sequences, heads, q_len, k_len, bias_q, bias_k, scale, p_drop, splits,
                   D: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, HAS_MASK: tl.constexpr,
                   CAUSAL: tl.constexpr, DROPOUT: tl.constexpr, VARLEN: tl.constexpr, PRECISION: tl.constexpr):
    """A program sums one tile over every `splits`-th sequence, from sequence `split`, into its own slice
    of DBias [splits, heads, bias_q, bias_k] (summed after): enough programs to fill the GPU."""
    pid_m, pid_n, pid = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    h, split = pid // splits, pid % splits
    offs_m = pid_m * BM + tl.arange(0, BM)
    offs_n = pid_n * BN + tl.arange(0, BN)
    acc = tl.zeros([BM, BN], tl.float32)
    seed = tl.load(Seed) if DROPOUT else 0
    for b in range(split, sequences, splits):
        q_start, m_len = _segment(CuQ, b, q_len, VARLEN)
        k_start, n_len = _segment(CuK, b, k_len, VARLEN)
        live = (pid_m * BM < m_len) & (pid_n * BN < n_len)  # packed: a tile past the example's end has none
        if CAUSAL:  # above the diagonal every gradient is 0
            live = live & (pid_n * BN <= pid_m * BM + BM - 1 + (n_len - m_len))
        if live:
            bh = b * heads + h
            q = _rows(Q + b * sqb + h * sqh + q_start * sqm, offs_m, sqm, m_len, D)
            do = _rows(DO + b * sob + h * soh + q_start * som, offs_m, som, m_len, D)
            k = _rows(K + b * skb + h * skh + k_start * skn, offs_n, skn, n_len, D)
            v = _rows(V + b * svb + h * svh + k_start * svn, offs_n, svn, n_len, D)
            lse, delta = _row_stats(LSE, Delta, b * slb + h * slh + q_start, offs_m, m_len)
            _, ds = _tile_grads(q, k, v, do, lse, delta, seed, bh, Bias + h * sbh, Mask + b * smb, offs_m, pid_n * BN,
                                m_len, n_len, sbq, sbk, scale, p_drop, True, HAS_MASK, CAUSAL, DROPOUT, PRECISION, BN)
            acc += ds
    tl.store(DBias + (split * heads + h) * bias_q * bias_k + offs_m[:, None] * bias_k + offs_n[None, :], acc,
             mask=(offs_m[:, None] < bias_q) & (offs_n[None, :] < bias_k))


@triton.jit
def _delta(DO, O, Delta, rows, q_len, heads, D: tl.constexpr, ROWS: tl.constexpr):
    """rowsum(dO * O) of [batch, queries, heads, dim] rows, written [batch, heads, queries]."""
    r = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    at = r[:, None] * D + tl.arange(0, D)[None, :]
    inside = r[:, None] < rows
    total = tl.sum(tl.load(DO + at, mask=inside, other=0.0).to(tl.float32)
                   * tl.load(O + at, mask=inside, other=0.0).to(tl.float32), 1)
    b, m, h = r // (q_len * heads), (r // heads) % q_len, r % heads
    tl.store(Delta + (b * heads + h) * q_len + m, total, mask=r < rows)


@functools.cache
def _processors(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 1


def _flags(q: torch.Tensor, mask: Optional[torch.Tensor], bounds: Optional[torch.Tensor], causal: bool,
           p_drop: float) -> dict[str, Any]:
    # fp32 inputs get fp32 products (the tests compare against torch's math); bf16/fp16 use the tensor cores
    return dict(D=q.shape[-1], HAS_MASK=mask is not None, CAUSAL=causal, DROPOUT=p_drop > 0, VARLEN=bounds is not None,
                PRECISION="ieee" if q.dtype == torch.float32 else "tf32")


def _operands(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: Optional[torch.Tensor],
              mask: Optional[torch.Tensor], seed: torch.Tensor, bounds_q: Optional[torch.Tensor],
              bounds_k: Optional[torch.Tensor], o: torch.Tensor, lse: torch.Tensor) -> tuple[tuple, list[int]]:
    """The kernels' first tensors (q, k, v, bias, mask, seed, the bounds of packed queries and keys; a
    placeholder where one is absent, which the kernel then never reads) and their strides: q/k/v [batch,
    heads, tokens, dim], bias [heads, queries, keys], mask [batch, keys], o's [batch, tokens, heads, dim] as
    (batch, head, token), lse's [batch, heads, queries] as (batch, head). Packed, the batch is one row and
    the kernels' `b` counts examples, so every batch stride is 0 (the example's first token is the offset)."""
    bias = bias if bias is not None else o.new_empty(1, 1, 1, dtype=torch.float32)
    mask = mask if mask is not None else seed.new_empty(1, 1)
    per_row = int(bounds_q is None)
    strides = [q.stride(0) * per_row, *q.stride()[1:3], k.stride(0) * per_row, *k.stride()[1:3], v.stride(0) * per_row,
               *v.stride()[1:3], *bias.stride(), mask.stride(0), o.stride(0) * per_row, o.stride(2), o.stride(1),
               lse.stride(0) * per_row, lse.stride(1)]
    return (q, k, v, bias, mask, seed, *(t if t is not None else seed for t in (bounds_q, bounds_k))), strides


@torch.library.custom_op("distill::t5_attention", mutates_args=())
def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: Optional[torch.Tensor],
               mask: Optional[torch.Tensor], seed: torch.Tensor, bounds_q: Optional[torch.Tensor],
               bounds_k: Optional[torch.Tensor], longest_q: int, longest_k: int, causal: bool, p_drop: float,
               scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    batch, heads, q_len, dim = q.shape
    sequences = batch if bounds_q is None else bounds_q.shape[0] - 1
    out = q.new_empty(batch, q_len, heads, dim)
    lse = torch.empty(batch, heads, q_len, device=q.device, dtype=torch.float32)
    tensors, strides = _operands(q, k, v, bias, mask, seed, bounds_q, bounds_k, out, lse)
    _forward[lambda meta: (triton.cdiv(longest_q, meta["BM"]), sequences * heads)](
        *tensors, out, lse, *strides, heads, q_len, k.shape[2], scale, p_drop, HAS_BIAS=bias is not None,
        **_flags(q, mask, bounds_q, causal, p_drop))
    return out, lse


@_attention.register_fake
def _(q, k, v, bias, mask, seed, bounds_q, bounds_k, longest_q, longest_k, causal, p_drop, scale):
    batch, heads, q_len, dim = q.shape
    return q.new_empty(batch, q_len, heads, dim), q.new_empty(batch, heads, q_len, dtype=torch.float32)


@torch.library.custom_op("distill::t5_attention_backward", mutates_args=())
def _attention_backward(grad: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                        bias: Optional[torch.Tensor], mask: Optional[torch.Tensor], seed: torch.Tensor,
                        bounds_q: Optional[torch.Tensor], bounds_k: Optional[torch.Tensor], longest_q: int,
                        longest_k: int, out: torch.Tensor, lse: torch.Tensor, causal: bool, p_drop: float,
                        scale: float, bias_grad: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    batch, heads, q_len, dim = q.shape
    k_len = k.shape[2]
    sequences = batch if bounds_q is None else bounds_q.shape[0] - 1
    grad = grad.contiguous()
    delta = torch.empty_like(lse)  # rowsum(dO * O) [batch, heads, queries], as softmax's backward needs
    rows = batch * q_len * heads
    _delta[(triton.cdiv(rows, 32),)](grad, out, delta, rows, q_len, heads, D=dim, ROWS=32)
    dq = torch.empty_like(out).transpose(1, 2)
    dk = k.new_empty(batch, k_len, heads, dim).transpose(1, 2)
    dv = v.new_empty(batch, k_len, heads, dim).transpose(1, 2)
    operands, strides = _operands(q, k, v, bias, mask, seed, bounds_q, bounds_k, grad, lse)
    shared = dict(HAS_BIAS=bias is not None, **_flags(q, mask, bounds_q, causal, p_drop))
    tensors = (*operands, grad, lse, delta)
    per_row = int(bounds_q is None)
    _backward_kv[lambda meta: (triton.cdiv(longest_k, meta["BN"]), sequences * heads)](
        *tensors, dk, dv, *strides, dk.stride(0) * per_row, *dk.stride()[1:3], heads, q_len, k_len, scale, p_drop,
        **shared)
    _backward_q[lambda meta: (triton.cdiv(longest_q, meta["BM"]), sequences * heads)](
        *tensors, dq.transpose(1, 2), *strides, heads, q_len, k_len, scale, p_drop, **shared)
    dbias = lse.new_zeros(0)
    if bias_grad:
        bias_q, bias_k = bias.shape[1:]
        tiles = triton.cdiv(bias_q, BLOCK) * triton.cdiv(bias_k, BLOCK) * heads
        splits = max(1, min(sequences, triton.cdiv(8 * _processors(q.device), tiles)))
        parts = torch.empty(splits, heads, bias_q, bias_k, device=q.device, dtype=torch.float32)
        shared.pop("HAS_BIAS")
        _backward_bias[(triton.cdiv(bias_q, BLOCK), triton.cdiv(bias_k, BLOCK), heads * splits)](
            *tensors, parts, *strides, sequences, heads, q_len, k_len, bias_q, bias_k, scale, p_drop, splits,
            BM=BLOCK, BN=BLOCK, num_warps=4, num_stages=2, **shared)
        dbias = parts.sum(0) if splits > 1 else parts[0]
    return dq, dk, dv, dbias


@_attention_backward.register_fake
def _(grad, q, k, v, bias, mask, seed, bounds_q, bounds_k, longest_q, longest_k, out, lse, causal, p_drop, scale,
      bias_grad):
    batch, heads, q_len, dim = q.shape
    k_len = k.shape[2]
    dbias = lse.new_empty(bias.shape) if bias_grad else lse.new_empty(0)
    return (out.new_empty(batch, q_len, heads, dim).transpose(1, 2), k.new_empty(batch, k_len, heads, dim).transpose(1, 2),
            v.new_empty(batch, k_len, heads, dim).transpose(1, 2), dbias)


def _setup(ctx: Any, inputs: tuple, output: tuple) -> None:
    q, k, v, bias, mask, seed, bounds_q, bounds_k, longest_q, longest_k, causal, p_drop, scale = inputs
    ctx.save_for_backward(q, k, v, bias, mask, seed, bounds_q, bounds_k, *output)
    ctx.flags = (longest_q, longest_k)
    ctx.options = (causal, p_drop, scale)


def _backward(ctx: Any, grad: torch.Tensor, _lse_grad: torch.Tensor) -> tuple:
    q, k, v, bias, mask, seed, bounds_q, bounds_k, out, lse = ctx.saved_tensors
    bias_grad = bias is not None and ctx.needs_input_grad[3]
    dq, dk, dv, dbias = _attention_backward(grad, q, k, v, bias, mask, seed, bounds_q, bounds_k, *ctx.flags, out, lse,
                                            *ctx.options, bias_grad)
    return dq, dk, dv, dbias.to(bias.dtype) if bias_grad else None, *[None] * 9


_attention.register_autograd(_backward, setup_context=_setup)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: Optional[torch.Tensor] = None,
              mask: Optional[torch.Tensor] = None, *, causal: bool = False, dropout: float = 0.0,
              scale: float = 1.0, bounds: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
              longest: Optional[tuple[int, int]] = None) -> torch.Tensor:
    """softmax(q k^T * scale + bias) v with key padding `mask` [batch, keys] (True = a real key) and
    dropout on the probabilities. q/k/v [batch, heads, tokens, dim]; bias [heads, queries, keys];
    the result is [batch, tokens, heads, dim].

    Packed: a batch of one row holds several examples back to back; `bounds` are the cumulative lengths
    (int32, examples + 1) of the queries' and the keys' examples, `longest` the longest of each; example
    i's queries attend to its keys alone, and the bias is read at positions within the example (so it
    needs [heads, >= longest queries, >= longest keys]). The bounds must cover the row and `longest` be
    right (distill's collator makes both): checking them here would wait for the GPU."""
    if q.shape[-1] not in HEAD_DIMS or k.shape[-1] != q.shape[-1] or v.shape != k.shape:
        raise ValueError(f"t5-fused attention: head sizes {HEAD_DIMS} and equal q/k/v heads, got {q.shape}, {k.shape}, {v.shape}")
    if mask is not None and tuple(mask.shape) != (k.shape[0], k.shape[2]):
        raise ValueError(f"t5-fused attention: the padding mask is [batch, keys] = {(k.shape[0], k.shape[2])}, got {tuple(mask.shape)}")
    packed = bounds is not None
    if packed and (q.shape[0] != 1 or mask is not None or longest is None or bounds[0].shape != bounds[1].shape):
        raise ValueError("t5-fused attention: packed examples come as one row with no padding mask, the bounds "
                         f"of as many query and key examples and the longest of each; got q {tuple(q.shape)}, "
                         f"bounds {[tuple(b.shape) for b in bounds]}, longest {longest}")
    longest = longest if packed else (q.shape[2], k.shape[2])
    if bias is not None:
        lengths = tuple(bias.shape[1:])
        fits = all(n >= m for n, m in zip(lengths, longest)) if packed else lengths == longest
        if bias.dim() != 3 or bias.shape[0] != q.shape[1] or not fits:
            raise ValueError(f"t5-fused attention: the bias is [heads, queries, keys] = {(q.shape[1], *longest)}"
                             f"{' or longer' if packed else ''}, got {tuple(bias.shape)}")
    dtype = torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") and q.is_cuda else q.dtype
    # the kernels step through rows by stride and read each row's dims contiguously
    q, k, v = (t.to(dtype) if t.stride(-1) == 1 else t.to(dtype).contiguous() for t in (q, k, v))
    seed = torch.randint(0, 2**30, (1,), device=q.device) if dropout > 0 else q.new_zeros(1, dtype=torch.long)
    mask = mask.to(torch.int8) if mask is not None else None
    bounds_q, bounds_k = (b.to(torch.int32) for b in bounds) if packed else (None, None)
    out, _ = _attention(q, k, v, bias.contiguous() if bias is not None else None, mask, seed, bounds_q, bounds_k,
                        *longest, causal, dropout, scale)
    return out


PACKED = ("source_bounds", "target_bounds", "longest_source", "longest_target")  # a packed batch's model keywords


def t5_fused_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                       attention_mask: Any, scaling: Optional[float] = None, dropout: float = 0.0,
                       position_bias: Optional[torch.Tensor] = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """HF's attention-interface contract: [batch, heads, tokens, dim] in, [batch, tokens, heads, dim] out."""
    cross = getattr(module, "is_decoder", False) and not getattr(module, "is_causal", True)
    if attention_mask is not None and attention_mask.dim() != 2:
        raise ValueError(f"t5-fused takes the 2D padding mask its mask function builds, got {tuple(attention_mask.shape)}")
    causal = bool(getattr(module, "is_causal", False))
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling  # HF's default (T5 passes 1.0)
    if kwargs.get("source_bounds") is not None:  # a packed batch (`pack`): the encoder's examples, the decoder's
        sources, targets, longest_source, longest_target = (kwargs[k] for k in PACKED)
        if not module.is_decoder:
            bounds, longest = (sources, sources), (longest_source, longest_source)
        elif cross:
            bounds, longest = (targets, sources), (longest_target, longest_source)
        else:
            bounds, longest = (targets, targets), (longest_target, longest_target)
        bias = position_bias[0] if position_bias is not None and not cross else None
        return attention(query, key, value, bias, causal=causal, dropout=dropout, scale=scale, bounds=bounds,
                         longest=longest), None
    if cross and not getattr(module, "has_relative_attention_bias", False):
        # T5's cross-attention bias is all zeros: SDPA gets the padding mask alone, [batch, 1, 1, keys],
        # not a float mask of batch x heads x queries x keys built and kept for backward in every layer.
        # Additive (finfo.min, as HF's masks): a row with no real key stays finite.
        mask = None
        if attention_mask is not None:
            mask = torch.zeros(attention_mask.shape, dtype=query.dtype, device=query.device).masked_fill(
                ~attention_mask.bool(), torch.finfo(query.dtype).min)[:, None, None, :]
        out = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=dropout,
                                                               scale=scale)
        return out.transpose(1, 2).contiguous(), None
    if cross or query.shape[-1] not in HEAD_DIMS or (position_bias is not None and position_bias.shape[0] != 1):
        mask = attention_mask[:, None, None, :] if attention_mask is not None else None
        if mask is not None and causal:  # SDPA adds causality only where no mask is given
            q_len, k_len = query.shape[2], key.shape[2]
            mask = mask & torch.ones(q_len, k_len, dtype=torch.bool, device=mask.device).tril(k_len - q_len)
        return sdpa_attention_forward(module, query, key, value, mask, scaling=scaling, dropout=dropout,
                                      position_bias=position_bias, **kwargs)
    bias = position_bias[0] if position_bias is not None else None
    out = attention(query, key, value, bias, attention_mask, causal=causal, dropout=dropout, scale=scale)
    return out, None


def pack(model: torch.nn.Module) -> None:
    """Readies a T5 on t5-fused for packed batches: each stack's examples back to back in one row, with no
    padding, their bounds as model keywords (`PACKED`, from distill's collator), which HF hands every
    attention call of both stacks. The first layer of each stack would compute its relative-position bias
    (and the decoder's first cross-attention its zeros) for the whole row, heads x tokens x tokens; a
    hook gives it one for the longest example instead, read at positions within each example."""
    dims = {m.key_value_proj_dim for m in model.modules() if hasattr(m, "relative_attention_num_buckets")}
    if not dims or not dims <= set(HEAD_DIMS):
        raise ValueError(f"t5-fused packs T5 attention of head sizes {HEAD_DIMS}, got {sorted(dims) or 'no T5 attention'}")
    for module in model.modules():
        if hasattr(module, "relative_attention_num_buckets") and not getattr(module, "_packed_bias", False):
            module.register_forward_pre_hook(_packed_bias, with_kwargs=True)
            module._packed_bias = True


def _packed_bias(module: torch.nn.Module, args: tuple, kwargs: dict[str, Any]) -> Optional[tuple[tuple, dict]]:
    if kwargs.get("source_bounds") is None or kwargs.get("position_bias") is not None:
        return None  # padded, or a later layer (given the first layer's bias)
    if kwargs.get("key_value_states") is not None or not module.has_relative_attention_bias:
        hidden = args[0] if args else kwargs["hidden_states"]
        bias = hidden.new_zeros(1, module.n_heads, 1, 1)  # cross-attention: none in T5, and none is read
    else:
        longest = kwargs["longest_target" if module.is_decoder else "longest_source"]
        bias = module.compute_bias(longest, longest)
    return args, {**kwargs, "position_bias": bias}


def padding_mask(*args: Any, attention_mask: Optional[torch.Tensor] = None, **kwargs: Any) -> Optional[torch.Tensor]:
    """The mask function: the 2D padding mask as it came (causality is the kernel's flag)."""
    return attention_mask


AttentionInterface.register(NAME, t5_fused_attention)
AttentionMaskInterface.register(NAME, padding_mask)

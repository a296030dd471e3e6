"""Packed causal batches on PyTorch's own variable-length FlashAttention: no padding, no mask.

A packed row holds several examples back to back. FlashAttention-2 (the flash-attn package) keeps them
apart at no cost; without it, SDPA needs a dense block-diagonal mask and attends over the whole row.
`torch.nn.attention.varlen` (PyTorch's FlashAttention kernels, CUDA only) takes the examples' cumulative
lengths instead, so a GPU without flash-attn packs too, with no new dependency. The collator computes the
lengths on the host (`cu_seq_lens_q`, `max_length_q`: HF's FlashAttention keyword names) and transformers
passes model keywords on to the attention function; it builds no mask for an implementation it does not
know. Importing this module registers the implementation (`set_attn_implementation("varlen")`).
"""
from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator
from typing import Any

import torch
from transformers import AttentionInterface

NAME = "varlen"


def ampere() -> bool:
    """A GPU of sm80 (Ampere) or newer: bf16 tensor cores, where torch's FlashAttention and Triton's bf16
    kernels run."""
    return torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 0)


def available() -> bool:
    """PyTorch has varlen attention (2.10 and later) and a GPU its FlashAttention kernels run on."""
    return ampere() and importlib.util.find_spec("torch.nn.attention.varlen") is not None


@contextlib.contextmanager
def padded(model: Any) -> Iterator[None]:
    """SDPA while a model that trains on varlen runs padded batches (HF `generate`), varlen again after."""
    from distill.train.model import set_attention

    if getattr(model.config, "_attn_implementation", None) != NAME:
        yield
        return
    set_attention(model, "sdpa")
    try:
        yield
    finally:
        set_attention(model, NAME)


def varlen_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: Any, scaling: float | None = None, dropout: float = 0.0,
                     cu_seq_lens_q: torch.Tensor | None = None, max_length_q: int | None = None,
                     sliding_window: int | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """[1, heads, tokens, dim] in, [1, tokens, heads, dim] out (HF's attention-interface contract)."""
    from torch.nn.attention.varlen import varlen_attn

    unsupported = [k for k in ("softcap", "s_aux") if kwargs.get(k) is not None]
    if unsupported:
        raise ValueError(f"varlen attention does not implement {', '.join(unsupported)}: use sdpa for this model")

    if cu_seq_lens_q is None or max_length_q is None or query.shape[0] != 1:
        raise ValueError("varlen attention needs packed batches (one row, cu_seq_lens_q and max_length_q from "
                         "distill's collator with packing)")
    if dropout:
        raise ValueError(f"varlen attention has no dropout on attention probabilities, got {dropout}")
    # FlashAttention takes bf16/fp16 only: under autocast (an fp32 model), RoPE leaves q and k in fp32, and
    # the kernel, unlike SDPA, is not on autocast's list, so the cast is done here.
    dtype = torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else query.dtype
    if dtype not in (torch.bfloat16, torch.float16):
        raise ValueError(f"varlen attention runs in bf16 or fp16 (a bf16 model, or bf16 autocast), not {dtype}")
    q, k, v = (t[0].transpose(0, 1).to(dtype) for t in (query, key, value))  # [tokens, heads, dim]
    if k.shape[1] != q.shape[1]:  # grouped-query attention: each key/value head serves a group of query heads
        k, v = (t.repeat_interleave(q.shape[1] // t.shape[1], dim=1) for t in (k, v))
    causal = getattr(module, "is_causal", True)
    # (left, right) keys a query sees; HF's sliding window of w counts the query itself (w - 1 to its left).
    window = (sliding_window - 1 if sliding_window else -1, 0 if causal else -1)
    scale = {} if scaling is None else {"scale": scaling}
    out = varlen_attn(q, k, v, cu_seq_lens_q, cu_seq_lens_q, max_length_q, max_length_q, window_size=window, **scale)
    return out[None], None


AttentionInterface.register(NAME, varlen_attention)

"""T5 attention without a materialised relative-position bias: FlexAttention, the bias as a score modifier.

With SDPA, T5's per-head bias travels as a float mask that requires grad, so every self-attention
layer materialises batch x heads x queries x keys scores, softmax and dropout (forward and backward;
~17% of an H200 step of CodeT5-large). Here the bias, one [1, heads, queries, keys] tensor per stack
(HF computes it in the first block and hands it on), is read inside the fused kernel, and its gradient
is accumulated there. Padding and causality come as a BlockMask (HF's flex mask), so fully masked
blocks are skipped.

FlexAttention has no dropout on the attention probabilities: a model set to `t5-flex` trains without
it (the hidden-state dropouts stay). Backward needs a GPU; on CPU it serves inference only.
Importing this module registers the implementation with transformers (`set_attn_implementation("t5-flex")`).
"""
from __future__ import annotations

from typing import Any

import torch
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, flex_attention_mask

NAME = "t5-flex"


def t5_flex_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attention_mask: Any, scaling: float | None = None, dropout: float = 0.0,
                      position_bias: torch.Tensor | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """[batch, heads, tokens, dim] in, [batch, tokens, heads, dim] out (HF's attention-interface contract)."""
    from torch.nn.attention.flex_attention import BlockMask, flex_attention

    if position_bias is not None and position_bias.shape[0] != 1:
        raise ValueError(f"t5-flex expects one position bias for the whole batch, got {tuple(position_bias.shape)}")
    block_mask = attention_mask if isinstance(attention_mask, BlockMask) else None
    if attention_mask is not None and block_mask is None:
        raise ValueError("t5-flex needs HF's flex BlockMask (the mask function registered beside it)")
    score_mod = None
    if position_bias is not None:
        bias = position_bias[0]

        def score_mod(score: torch.Tensor, b: torch.Tensor, h: torch.Tensor, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
            return score + bias[h, q, k]

    out = flex_attention(query, key, value, score_mod=score_mod, block_mask=block_mask, scale=scaling)
    return out.transpose(1, 2).contiguous(), None


AttentionInterface.register(NAME, t5_flex_attention)
AttentionMaskInterface.register(NAME, flex_attention_mask)

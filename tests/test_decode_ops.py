"""decode_ops' kernels against the HF modules whose arithmetic they fuse (LLaMA's RMSNorm, rotary
embedding, SwiGLU). On CPU under Triton's interpreter (conftest sets TRITON_INTERPRET=1 where no GPU is)."""
from __future__ import annotations

import pytest
import torch

from distill.evaluation import decode_attention, decode_ops

pytestmark = pytest.mark.skipif(not decode_attention.runs(torch.device("cpu")) and not torch.cuda.is_available(),
                                reason="the decode kernels need Triton: a CUDA build of PyTorch, or "
                                       "`pip install triton` with TRITON_INTERPRET=1 on CPU")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# bf16 on the GPU only: Triton's CPU interpreter rounds float32 -> bfloat16 ties otherwise than the GPU
# (and PyTorch), which round them to even
DTYPES = [torch.float32, pytest.param(torch.bfloat16, marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="Triton's interpreter rounds bf16 ties away from the GPU's rounding"))]


def _config():
    from transformers import LlamaConfig

    return LlamaConfig(hidden_size=96, intermediate_size=200, num_attention_heads=6, num_key_value_heads=2,
                       rms_norm_eps=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_add_rms_norm_is_the_residual_add_then_llamas_rmsnorm(dtype: torch.dtype) -> None:
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    gen = torch.Generator().manual_seed(0)
    norm = LlamaRMSNorm(96, eps=1e-5)
    norm.weight.data = torch.randn(96, generator=gen)
    norm = norm.to(DEVICE, dtype)
    x, delta = (torch.randn(3, 5, 96, generator=gen).to(DEVICE, dtype) for _ in range(2))
    total, out = decode_ops.add_rms_norm(x, delta, norm.weight, norm.variance_epsilon)
    assert torch.equal(total, x + delta)
    torch.testing.assert_close(out, norm(x + delta), **({} if dtype == torch.float32 else {"atol": 1e-2, "rtol": 1e-2}))
    alone, normed = decode_ops.add_rms_norm(x, None, norm.weight, norm.variance_epsilon)
    assert alone is x
    torch.testing.assert_close(normed, norm(x), **({} if dtype == torch.float32 else {"atol": 1e-2, "rtol": 1e-2}))
    if dtype == torch.bfloat16:  # rounded where HF rounds: nearly all equal
        assert (normed == norm(x)).float().mean() > 0.97


@pytest.mark.parametrize("dtype", DTYPES)
def test_rope_equals_hfs_rotary_embedding_on_q_and_k(dtype: torch.dtype) -> None:
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

    config = _config()
    gen = torch.Generator().manual_seed(1)
    rotary = LlamaRotaryEmbedding(config).to(DEVICE)
    q = torch.randn(3, 4, 6 * 16, generator=gen).to(DEVICE, dtype)
    k = torch.randn(3, 4, 2 * 16, generator=gen).to(DEVICE, dtype)
    positions = torch.tensor([[0, 1, 2, 3], [5, 6, 7, 8], [40, 41, 42, 43]], device=DEVICE)
    cos, sin = rotary(q, positions)
    heads = lambda t, n: t.view(3, 4, n, 16).transpose(1, 2)
    want_q, want_k = apply_rotary_pos_emb(heads(q, 6), heads(k, 2), cos, sin)
    assert torch.equal(heads(decode_ops.rope(q, cos, sin), 6), want_q)
    assert torch.equal(heads(decode_ops.rope(k, cos, sin), 2), want_k)


@pytest.mark.parametrize("dtype", DTYPES)
def test_silu_mul_is_swiglus_product(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(2)
    gate, up = (torch.randn(7, 1, 2000, generator=gen).to(DEVICE, dtype) * 4 for _ in range(2))
    got, want = decode_ops.silu_mul(gate, up), torch.nn.functional.silu(gate) * up
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6 if dtype == torch.float32 else 1e-2)
    if dtype == torch.bfloat16:  # exp's last bit may differ, and rarely the rounding after it
        assert (got == want).float().mean() > 0.99

"""The fused decode attention (`distill.evaluation.decode_attention`): the kernel against SDPA, and
GreedyLoop's tokens with it against the SDPA step's. On CPU the kernel runs under Triton's interpreter
(conftest sets TRITON_INTERPRET=1 where no GPU is); on CUDA the loop test also runs on the GPU."""
from __future__ import annotations

import pytest
import torch
from test_eval import _tiny

from distill.evaluation import decode_attention
from distill.evaluation.graphs import GreedyLoop
from distill.evaluation.steps import attend

pytestmark = pytest.mark.skipif(not decode_attention.runs(torch.device("cpu")) and not torch.cuda.is_available(),
                                reason="the fused decode attention needs Triton: a CUDA build of PyTorch, or "
                                       "`pip install triton` with TRITON_INTERPRET=1 on CPU")


def _reference(q, k, v, lo, hi, scale, bias=None):
    """SDPA over the span [lo, hi) of each row, `bias[h, hi - 1 - slot]` added."""
    slots = torch.arange(k.shape[2])
    inside = (slots >= lo[:, None]) & (slots < hi[:, None])
    mask = torch.where(inside, 0.0, float("-inf"))[:, None, None, :]
    if bias is not None:
        mask = mask + bias[:, (hi[:, None] - 1 - slots).clamp(min=0)].permute(1, 0, 2)[:, :, None, :]
    group = q.shape[1] // k.shape[1]
    return attend(q, k.repeat_interleave(group, 1), v.repeat_interleave(group, 1), mask, scale)


@pytest.mark.parametrize("heads,kv_heads,bias", [(4, 4, False), (4, 2, False), (4, 4, True)])
def test_kernel_matches_sdpa_over_each_rows_span(heads: int, kv_heads: int, bias: bool) -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    gen = torch.Generator().manual_seed(0)
    batch, slots, dim = 5, 300, 64  # the kernel reads 128 keys a tile (dim 64): spans over several tiles and inside one
    q = torch.randn(batch, heads, 1, dim, generator=gen)
    cache = torch.randn(2, batch, kv_heads, slots + 7, dim, generator=gen)[..., :slots, :]  # a slot stride past the view
    k, v = cache[0], cache[1]
    lo, hi = torch.tensor([0, 3, 127, 0, 140]), torch.tensor([300, 20, 129, 1, 299])
    table = torch.randn(heads, slots, generator=gen) if bias else None
    scale = 1.0 if bias else dim ** -0.5
    on = [t.to(device) if t is not None else None for t in (q, k, v, lo, hi, table)]
    out = decode_attention.decode_attention(*on[:5], scale, on[5]).cpu()
    assert out.shape == (batch, 1, heads * dim)
    torch.testing.assert_close(out, _reference(q, k, v, lo, hi, scale, table), atol=1e-5, rtol=1e-5)


def _prompts(kind: str, lengths: list[int], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded prompts: on the left for the causal model (as HFDecoder pads them), on the right for T5."""
    gen = torch.Generator().manual_seed(1)
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, n in enumerate(lengths):
        span = slice(width - n, None) if kind == "causal" else slice(0, n)
        ids[row, span] = torch.randint(2, 64, (n,), generator=gen)
        mask[row, span] = 1
    return ids, mask


@pytest.mark.parametrize("kind", ["seq2seq", "causal"])
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_greedy_loop_with_the_kernel_makes_the_sdpa_steps_tokens(kind: str, device: str) -> None:
    """Same tokens as the SDPA step, prompts of several lengths, EOS allowed (rows end at different steps);
    on CUDA inside CUDA graphs (and the SDPA step without them). A T5 row of padding only (the kernel's
    source span (0, 1)) decodes to something finite; its tokens are not compared (CUDA's SDPA gives such
    a row zeros)."""
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    if device == "cpu" and not decode_attention.runs(torch.device("cpu")):
        pytest.skip("Triton's interpreter is not on (TRITON_INTERPRET=1)")
    from distill.evaluation.graphs import cuda_graph

    model = _tiny(kind).to(device)
    new = 12
    ids, mask = _prompts(kind, [9, 2, 5, 1], 9)
    if kind == "seq2seq":
        ids[1], mask[1] = 0, 0
    ids, mask = ids.to(device), mask.to(device)
    capture = cuda_graph if device == "cuda" else None
    runs = [(capture, False), (capture, True)] + [(None, False)] * (capture is not None)  # and without graphs
    outs = [GreedyLoop(model, max_new_tokens=new, pad_token_id=0, force_new_tokens=False, capture=c, fused=fused)(ids, mask)
            for c, fused in runs]
    real = mask.any(-1)
    assert all(torch.equal(outs[0][real], out[real]) for out in outs[1:])
    assert (outs[0][real] != 0).sum() > real.sum()  # tokens were made, not only padding
    assert ((outs[1] >= 0) & (outs[1] < 64)).all()


@pytest.mark.parametrize("kind", ["seq2seq", "causal"])
def test_compile_ahead_compiles_every_kernel_the_loop_launches(kind: str) -> None:
    """Building the loop compiles the kernels' variants in a thread (decode_attention's, decode_ops');
    decoding, prefill included, then compiles none (head dim 8: the cache's strides are multiples of 16
    or not by its length; T5's bias table's row stride is `new + 1`: 13, then 16)."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from distill.evaluation import decode_ops

    kernels = [decode_attention._decode_kernel, decode_ops._add_rms_norm_kernel, decode_ops._rope_kernel,
               decode_ops._silu_mul_kernel]
    for kernel in kernels:
        kernel.device_caches.clear()  # forget what earlier tests compiled in this process
    compiled = lambda: [len(kernel.device_caches[torch.cuda.current_device()][0]) for kernel in kernels]
    model = _tiny(kind).to("cuda")
    loops = [GreedyLoop(model, max_new_tokens=new, pad_token_id=0, force_new_tokens=True, fused=True) for new in (12, 15)]
    decode_attention.wait()
    ahead = compiled()
    assert ahead[0] > 0 and ahead[1] > 0 and (min(ahead) > 0) == (kind == "causal")  # T5: attention, norms only
    ids, mask = _prompts(kind, [9, 2, 5, 1], 9)
    for loop in loops:
        loop(ids.cuda(), mask.cuda())
    assert compiled() == ahead


def test_prompts_padded_on_the_wrong_side_are_refused() -> None:
    model = _tiny("causal")
    ids, mask = _prompts("seq2seq", [3, 5], 5)  # right-padded
    loop = GreedyLoop(model, max_new_tokens=2, pad_token_id=0, force_new_tokens=True, fused=True)
    with pytest.raises(ValueError, match="left-padded"):
        loop(ids, mask)


def test_a_capture_out_of_memory_is_captured_again_on_an_emptied_cache() -> None:
    """The cache is kept through captures (`cuda_graph`); a capture that needs memory the allocator holds
    cached but cannot free mid-capture runs out, and is captured again after emptying the cache."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from distill.evaluation.graphs import cuda_graph

    gib = 1 << 30
    torch.cuda.empty_cache()
    cap = torch.cuda.memory_reserved() + 2 * gib
    torch.cuda.set_per_process_memory_fraction(cap / torch.cuda.get_device_properties(0).total_memory)
    try:
        cached = torch.empty(3 * gib // 2, dtype=torch.uint8, device="cuda")
        del cached  # 1.5 GiB reserved but free: only 0.5 GiB more can be taken
        out = torch.zeros(4, device="cuda")
        attempts = []

        def step() -> None:
            attempts.append(1)
            scratch = torch.ones(gib // 4, device="cuda")  # 1 GiB, inside the capture
            out.copy_(scratch[:4] * 2)

        replay = cuda_graph(step, torch.cuda.graph_pool_handle())
        replay()
        torch.cuda.synchronize()
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    assert len(attempts) == 2 and out.tolist() == [2.0] * 4

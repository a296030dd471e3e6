"""`t5-fused` (Triton kernels with T5's relative-position bias inside) against torch's math and HF's SDPA T5:
outputs and every gradient, bias included; dropout's mask redrawn in backward; cached decoding. On CPU the
kernels run under Triton's interpreter (conftest sets TRITON_INTERPRET=1 where no GPU is); on a GPU also
in bf16 and inside compiled blocks."""
import copy
import importlib.util
import os

import pytest
import torch

from distill.records import InputError
from distill.train import load_config
from distill.train.compile import compile_blocks
from distill.train import varlen
from distill.train.model import T5_FUSED, attention, set_attention
from t5_tiny import t5_batch, tiny_t5

GPU = torch.cuda.is_available()
DEVICE = "cuda" if GPU else "cpu"
HAS_TRITON = importlib.util.find_spec("triton") is not None
kernels = pytest.mark.skipif(not HAS_TRITON or not (GPU or os.environ.get("TRITON_INTERPRET") == "1"),
                             reason="needs Triton: a GPU, or `pip install triton` with TRITON_INTERPRET=1 on CPU")


@pytest.fixture(autouse=True)
def one_tile_on_the_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a GPU, Triton would time every tile candidate of each kernel for each new mask kind (minutes of
    compiles over this file): the tests take the first, as under the interpreter, and the tile test runs
    each candidate in turn."""
    if GPU and HAS_TRITON:
        from distill.train import t5_fused

        for kernel in (t5_fused._forward, t5_fused._backward_kv, t5_fused._backward_q):
            monkeypatch.setattr(kernel, "configs", kernel.configs[:1])
            monkeypatch.setattr(kernel, "cache", {})


def reference(q, k, v, bias, mask, causal, keep=None, p_drop=0.0):
    """Torch's math, [batch, tokens, heads, dim] out; `keep`: a dropout mask to apply."""
    s = q.float() @ k.float().transpose(-1, -2)
    if bias is not None:
        s = s + bias.float()
    q_len, k_len = s.shape[-2:]
    valid = torch.ones(q_len, k_len, dtype=torch.bool, device=s.device)
    valid = valid.tril(k_len - q_len) if causal else valid
    if mask is not None:
        valid = valid & mask[:, None, None, :]
    p = s.masked_fill(~valid, float("-inf")).softmax(-1)
    if keep is not None:
        p = p * keep / (1 - p_drop)
    return (p @ v.float()).transpose(1, 2)


def inputs(batch=3, heads=2, q_len=70, k_len=70, dim=16, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    # q/k/v as HF makes them: [batch, heads, tokens, dim] views of [batch, tokens, heads * dim] projections
    q = torch.randn(batch, q_len, heads * dim, generator=g).view(batch, q_len, heads, dim).transpose(1, 2)
    k, v = (torch.randn(batch, k_len, heads * dim, generator=g).view(batch, k_len, heads, dim).transpose(1, 2)
            for _ in range(2))
    bias = torch.randn(heads, q_len, k_len, generator=g)
    mask = torch.ones(batch, k_len, dtype=torch.bool)
    mask[1, k_len - 20:] = False
    mask[-1, 5:] = False
    return [t.to(DEVICE, dtype if t.is_floating_point() else t.dtype).requires_grad_(t.is_floating_point())
            for t in (q, k, v, bias)] + [mask.to(DEVICE)]


@kernels
@pytest.mark.parametrize("causal, with_bias, q_len, processors", [
    (False, True, 70, None), (True, True, 70, None), (False, False, 70, None),
    (True, True, 5, None),  # 5 of 70: a decoder step over its cache
    (False, True, 70, 64), (True, True, 70, 64)])  # many processors: the bias gradient summed in batch slices
def test_kernels_match_torchs_math(causal: bool, with_bias: bool, q_len: int, processors: int | None,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from distill.train import t5_fused

    if processors:
        monkeypatch.setattr(t5_fused, "_processors", lambda device: processors)
    q, k, v, bias, mask = inputs(q_len=q_len)
    bias = bias if with_bias else None
    got = t5_fused.attention(q, k, v, bias, mask, causal=causal)
    want = reference(q, k, v, bias, mask, causal)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    grad = torch.randn_like(want)
    leaves = [t for t in (q, k, v, bias) if t is not None]
    for g_got, g_want in zip(torch.autograd.grad((got * grad).sum(), leaves), torch.autograd.grad((want * grad).sum(), leaves)):
        torch.testing.assert_close(g_got, g_want, rtol=1e-4, atol=1e-4)


@kernels
def test_dropout_draws_one_mask_and_backward_redraws_it() -> None:
    from distill.train import t5_fused

    p_drop = 0.25
    # 100 keys: two key tiles, so each backward kernel must redraw the mask of the right keys
    q, k, _, bias, mask = inputs(batch=2, q_len=100, k_len=100, dim=128)
    eye = torch.eye(100, 128, device=DEVICE).expand(2, 2, 100, 128).requires_grad_()  # out = the dropped probabilities
    torch.manual_seed(7)
    dropped = t5_fused.attention(q, k, eye, bias, mask, dropout=p_drop).transpose(1, 2)[..., :100]
    probs = reference(q, k, eye, bias, mask, False).transpose(1, 2)[..., :100]
    keep = dropped != 0
    torch.testing.assert_close(dropped[keep], (probs / (1 - p_drop))[keep], rtol=1e-4, atol=1e-5)
    positive = probs > 0  # padding keys have probability 0 either way
    assert abs(1 - keep[positive].float().mean().item() - p_drop) < 0.06
    # the same seed gives the same mask; backward uses it too
    q2, k2, v2, bias2, _ = inputs(batch=2, q_len=100, k_len=100, dim=128, seed=1)
    torch.manual_seed(7)
    got = t5_fused.attention(q2, k2, v2, bias2, mask, dropout=p_drop)
    want = reference(q2, k2, v2, bias2, mask, False, keep=keep, p_drop=p_drop)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    grad = torch.randn_like(want)
    leaves = (q2, k2, v2, bias2)
    for g_got, g_want in zip(torch.autograd.grad((got * grad).sum(), leaves), torch.autograd.grad((want * grad).sum(), leaves)):
        torch.testing.assert_close(g_got, g_want, rtol=1e-4, atol=1e-4)
    torch.manual_seed(8)
    assert not torch.equal(t5_fused.attention(q, k, eye, bias, mask, dropout=p_drop).transpose(1, 2)[..., :100] != 0, keep)


@kernels
@pytest.mark.parametrize("tile", range(5))
def test_every_tile_triton_may_choose_gives_the_same_attention_and_dropout(tile: int,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Triton times the candidates on a GPU and keeps the fastest: each must be right, and draw the same
    dropout mask (it depends on positions, not tiles)."""
    import triton

    from distill.train import t5_fused

    q, k, v, bias, mask = inputs(q_len=70)
    grad = torch.randn(3, 70, 2, 16, device=DEVICE)

    def dropped() -> list[torch.Tensor]:  # output and gradients under dropout, seed 3
        torch.manual_seed(3)
        out = t5_fused.attention(q, k, v, bias, mask, causal=True, dropout=0.2)
        return [out, *torch.autograd.grad((out * grad).sum(), (q, k, v, bias))]

    first = dropped()
    for kernel, tiles in ((t5_fused._forward, t5_fused.FORWARD_TILES), (t5_fused._backward_kv, t5_fused.KV_TILES),
                          (t5_fused._backward_q, t5_fused.Q_TILES)):
        m, n, warps, stages = tiles[tile]
        monkeypatch.setattr(kernel, "configs", [triton.Config({"BM": m, "BN": n}, num_warps=warps, num_stages=stages)])
        monkeypatch.setattr(kernel, "cache", {})
    for got, want in zip(dropped(), first):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    for causal in (False, True):
        got = t5_fused.attention(q, k, v, bias, mask, causal=causal)
        want = reference(q, k, v, bias, mask, causal)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
        for g_got, g_want in zip(torch.autograd.grad((got * grad).sum(), (q, k, v, bias)),
                                 torch.autograd.grad((want * grad).sum(), (q, k, v, bias))):
            torch.testing.assert_close(g_got, g_want, rtol=1e-4, atol=1e-4)


def packed(lengths: list[int], heads: int = 2, dim: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """[1, heads, tokens, dim] of examples of `lengths` back to back, as HF views a packed row, and its bounds."""
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(1, sum(lengths), heads * dim, generator=g).view(1, sum(lengths), heads, dim).transpose(1, 2)
    bounds = torch.tensor([0, *lengths]).cumsum(0).to(torch.int32)
    return t.to(DEVICE).requires_grad_(), bounds.to(DEVICE)


@kernels
@pytest.mark.parametrize("causal, with_bias, processors", [(False, True, None), (True, True, None), (False, False, None),
                                                          (True, True, 64)])
def test_packed_examples_attend_within_themselves_at_their_own_positions(
        causal: bool, with_bias: bool, processors: int | None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A packed row against each example alone: queries of 70, 5 and 33 tokens over keys of 70, 40 and 1
    (cross-attention's shape; self-attention has the same bounds twice), a bias longer than any example."""
    from distill.train import t5_fused

    if processors:
        monkeypatch.setattr(t5_fused, "_processors", lambda device: processors)
    q_lengths, k_lengths = ([70, 5, 33], [70, 5, 33]) if causal else ([70, 5, 33], [70, 40, 1])
    (q, q_bounds), (k, k_bounds), (v, _) = packed(q_lengths), packed(k_lengths, seed=1), packed(k_lengths, seed=2)
    bias = torch.randn(2, 80, 75, device=DEVICE).requires_grad_() if with_bias else None
    got = t5_fused.attention(q, k, v, bias, causal=causal, bounds=(q_bounds, k_bounds),
                             longest=(max(q_lengths), max(k_lengths)))
    parts = []
    for i, (m, n) in enumerate(zip(q_lengths, k_lengths)):
        qs, ks = q_bounds[i].item(), k_bounds[i].item()
        parts.append(reference(q[:, :, qs:qs + m], k[:, :, ks:ks + n], v[:, :, ks:ks + n],
                               bias[:, :m, :n] if with_bias else None, None, causal))
    want = torch.cat(parts, 1)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    if with_bias:  # a bias shorter than the longest example is refused
        with pytest.raises(ValueError, match=r"the bias is \[heads, queries, keys\] = \(2, 70, \d+\) or longer"):
            t5_fused.attention(q, k, v, bias[:, :69], causal=causal, bounds=(q_bounds, k_bounds),
                               longest=(max(q_lengths), max(k_lengths)))
    grad = torch.randn_like(want)
    leaves = [t for t in (q, k, v, bias) if t is not None]
    for g_got, g_want in zip(torch.autograd.grad((got * grad).sum(), leaves), torch.autograd.grad((want * grad).sum(), leaves)):
        torch.testing.assert_close(g_got, g_want, rtol=1e-4, atol=1e-4)


@kernels
@pytest.mark.parametrize("causal", [False, True])
def test_packed_dropout_draws_one_mask_per_example_and_backward_redraws_it(causal: bool) -> None:
    """Dropout keyed by example: an identity V shows each example's dropped probabilities; run again with the
    same seed, output and every gradient equal torch's math under those masks."""
    from distill.train import t5_fused

    p_drop = 0.25
    q_lengths, k_lengths = ([70, 5, 33], [70, 5, 33]) if causal else ([70, 5, 33], [70, 40, 1])
    longest = (max(q_lengths), max(k_lengths))
    (q, q_bounds), (k, k_bounds) = packed(q_lengths, dim=128), packed(k_lengths, dim=128, seed=1)
    bias = torch.randn(2, 80, 75, device=DEVICE)
    eye = torch.zeros(1, 2, sum(k_lengths), 128, device=DEVICE)
    spans = [(q_bounds[i].item(), m, k_bounds[i].item(), n) for i, (m, n) in enumerate(zip(q_lengths, k_lengths))]
    for _, _, ks, n in spans:
        eye[0, :, ks:ks + n, :n] = torch.eye(n, device=DEVICE)
    torch.manual_seed(7)
    dropped = t5_fused.attention(q, k, eye, bias, causal=causal, dropout=p_drop, bounds=(q_bounds, k_bounds), longest=longest)
    keeps, kept = [], []
    for qs, m, ks, n in spans:
        mine = dropped[:, qs:qs + m].transpose(1, 2)[..., :n]
        probs = reference(q[:, :, qs:qs + m], k[:, :, ks:ks + n], eye[:, :, ks:ks + n], bias[:, :m, :n], None,
                          causal).transpose(1, 2)[..., :n]
        keep = mine != 0
        torch.testing.assert_close(mine[keep], (probs / (1 - p_drop))[keep], rtol=1e-4, atol=1e-5)
        keeps.append(keep)
        kept.append(keep[probs > 0])  # (causal: the future has probability 0 either way)
    assert abs(1 - torch.cat(kept).float().mean().item() - p_drop) < 0.06
    (q2, _), (k2, _), (v2, _) = packed(q_lengths, seed=3), packed(k_lengths, seed=4), packed(k_lengths, seed=5)
    bias2 = torch.randn(2, 80, 75, device=DEVICE).requires_grad_()
    torch.manual_seed(7)
    got = t5_fused.attention(q2, k2, v2, bias2, causal=causal, dropout=p_drop, bounds=(q_bounds, k_bounds), longest=longest)
    want = torch.cat([reference(q2[:, :, qs:qs + m], k2[:, :, ks:ks + n], v2[:, :, ks:ks + n], bias2[:, :m, :n], None,
                                causal, keep=keep, p_drop=p_drop) for (qs, m, ks, n), keep in zip(spans, keeps)], 1)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    grad = torch.randn_like(want)
    leaves = (q2, k2, v2, bias2)
    for g_got, g_want in zip(torch.autograd.grad((got * grad).sum(), leaves), torch.autograd.grad((want * grad).sum(), leaves)):
        torch.testing.assert_close(g_got, g_want, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not GPU, reason="bf16 tensor-core kernels need a GPU")
@pytest.mark.parametrize("causal", [False, True])
def test_bf16_on_the_gpu_is_as_close_as_sdpas_math(causal: bool) -> None:
    from distill.train import t5_fused

    q, k, v, bias, mask = inputs(batch=4, heads=4, q_len=200, k_len=200, dim=64, dtype=torch.bfloat16)
    got = t5_fused.attention(q, k, v, bias, mask, causal=causal).float()
    want = reference(q, k, v, bias, mask, causal)
    assert (got - want).abs().max() < 2e-2
    grad = torch.randn_like(want)
    for g_got, g_want in zip(torch.autograd.grad((got * grad).sum(), (q, k, v, bias)),
                             torch.autograd.grad((want * grad).sum(), (q, k, v, bias))):
        assert (g_got.float() - g_want).norm() / g_want.norm() < 1e-2


def t5_pair(dropout: float = 0.0, d_kv: int = 16) -> tuple[torch.nn.Module, torch.nn.Module]:
    sdpa = tiny_t5(dropout, DEVICE, d_kv)
    fused = copy.deepcopy(sdpa)
    set_attention(fused, attention(load_config(None, {"student": "tiny-t5", "data": "x", "output_dir": "y",
                                                      "attn_implementation": T5_FUSED}), True, "seq2seq"))
    return sdpa, fused


@kernels
@pytest.mark.parametrize("compiled", [False, pytest.param(True, marks=pytest.mark.skipif(not GPU, reason="on a GPU"))])
def test_t5_loss_and_gradients_match_sdpa(compiled: bool) -> None:
    sdpa, fused = t5_pair()
    if compiled:
        compile_blocks(fused, graph_bound=16)
    losses, grads = [], []
    for model in (sdpa, fused):
        loss = model.train()(**t5_batch(DEVICE)).loss
        loss.backward()
        losses.append(loss.detach())
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-5)
    assert grads[0].keys() == grads[1].keys()
    for stack in ("encoder", "decoder"):  # both stacks' biases learn through the kernels
        assert grads[1][f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"].abs().sum() > 0
    for name, want in grads[0].items():
        torch.testing.assert_close(grads[1][name], want, rtol=1e-3, atol=1e-5, msg=name)


@kernels
def test_t5_with_dropout_trains_and_decoding_from_a_cache_matches_sdpa() -> None:
    sdpa, fused = t5_pair(dropout=0.1)
    batch = t5_batch(DEVICE)
    loss = fused.train()(**batch).loss
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in fused.parameters() if p.grad is not None)
    prompt = {k: batch[k] for k in ("input_ids", "attention_mask")}
    targets = batch["labels"][:, :6].clamp(min=3)  # distinct tokens: a repeated one would hide a wrong causal mask
    with torch.no_grad():
        want = sdpa.eval()(**prompt, decoder_input_ids=targets).logits
        encoded, cache, steps = fused.eval().get_encoder()(**prompt), None, []
        for t in range(targets.shape[1]):  # one query over the cached keys a step, as generate runs
            out = fused(encoder_outputs=encoded, attention_mask=prompt["attention_mask"],
                        decoder_input_ids=targets[:, t:t + 1], past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            steps.append(out.logits)
    torch.testing.assert_close(torch.cat(steps, 1), want, rtol=1e-4, atol=1e-4)


@kernels
@pytest.mark.parametrize("compiled", [False, pytest.param(True, marks=pytest.mark.skipif(not GPU, reason="on a GPU"))])
def test_a_packed_t5_batch_gives_the_padded_batchs_loss_and_gradients(compiled: bool) -> None:
    """distill's collator packs each stack's examples into one row; the summed loss and every gradient
    (both stacks' biases too) match the same examples padded, and the first layers build no bias as
    long as the row."""
    from distill.train import t5_fused
    from distill.train.data import Collator
    from distill.train.loop import loss_sum, to_device

    _, padded_model = t5_pair()
    packed_model = copy.deepcopy(padded_model)
    t5_fused.pack(packed_model)
    if compiled:
        compile_blocks(packed_model, graph_bound=16)
    g = torch.Generator().manual_seed(2)
    examples = [{"src": torch.randint(3, 128, (n,), generator=g).tolist(), "tgt": torch.randint(3, 128, (t,), generator=g).tolist()}
                for n, t in ((40, 33), (7, 5), (25, 1), (3, 20))]
    batches = [Collator("seq2seq", 0, decoder_start_id=0, packing=packing)(examples) for packing in (False, True)]
    assert batches[1]["input_ids"].shape == (1, 75) and batches[1]["longest_target"] == 33
    biases = []
    hook = torch.nn.Module.register_forward_hook  # the bias each first layer hands on
    handles = [hook(m, lambda m, a, out: biases.append(out[1].shape))
               for m in packed_model.modules() if getattr(m, "has_relative_attention_bias", False)]
    losses, grads = [], []
    for model, batch in zip((padded_model, packed_model), batches):
        loss = loss_sum(model.train(), to_device(batch, torch.device(DEVICE)))
        loss.backward()
        losses.append(loss.detach())
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    for h in handles:
        h.remove()
    assert sorted(biases) == [(1, 4, 33, 33), (1, 4, 40, 40)]
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-4)
    assert grads[0].keys() == grads[1].keys()
    for name, want in grads[0].items():
        torch.testing.assert_close(grads[1][name], want, rtol=1e-3, atol=1e-4, msg=name)


@kernels
def test_head_sizes_the_kernels_do_not_take_fall_back_to_sdpa_with_causality_kept() -> None:
    """d_kv 8 goes to SDPA; a decoder padding mask there must not undo the decoder's causal mask."""
    sdpa, fused = t5_pair(d_kv=8)
    batch = t5_batch(DEVICE)
    targets = batch["labels"][:, :10].clamp(min=3)
    decoder_mask = torch.ones_like(targets)
    decoder_mask[0, :3] = 0  # left-padded, as distill's TIR decoding passes it
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
              "decoder_input_ids": targets, "decoder_attention_mask": decoder_mask}
    with torch.no_grad():
        want, got = (model.eval()(**inputs).logits for model in (sdpa, fused))
        later = targets.clone()
        later[:, -1] = 5  # a later token must not change earlier positions' logits
        moved = fused(**(inputs | {"decoder_input_ids": later})).logits
    real = decoder_mask.bool()
    torch.testing.assert_close(got[real], want[real], rtol=1e-4, atol=1e-5)
    # (a padded position sees no real key: its softmax spreads over every key, as under SDPA)
    torch.testing.assert_close(moved[:, :-1][real[:, :-1]], got[:, :-1][real[:, :-1]], rtol=1e-5, atol=1e-6)


def test_auto_picks_the_fused_kernels_for_t5_on_a_gpu_and_refuses_them_elsewhere() -> None:
    config = load_config(None, {"student": "tiny-t5", "data": "x", "output_dir": "y"})
    assert attention(config, False, "seq2seq") == "sdpa"
    assert attention(config, True, "seq2seq") == (T5_FUSED if HAS_TRITON and varlen.ampere() else "sdpa")
    asked = load_config(None, {"student": "tiny-t5", "data": "x", "output_dir": "y", "attn_implementation": T5_FUSED})
    for kind, on_gpu in (("seq2seq", False), ("causal", True)):
        with pytest.raises(InputError, match="key 'attn_implementation': t5-fused trains T5-family students on a GPU"):
            attention(asked, on_gpu, kind)


@kernels
def test_t5_packs_on_t5_fused_alone() -> None:
    """auto and `packing: true` pack a T5 on t5-fused; elsewhere (other attention, gkd, head sizes the
    kernels do not take) auto keeps it padded and true is refused, naming the key."""
    from distill.train.model import packs

    assert not packs(t5_pair()[1], "seq2seq", False)
    for packing in ("auto", True):
        fused = t5_pair()[1]
        assert packs(fused, "seq2seq", packing)
        assert any(m._forward_pre_hooks for m in fused.modules() if hasattr(m, "relative_attention_num_buckets"))
    for model, objective in ((tiny_t5(), "sft"), (t5_pair()[1], "gkd"), (t5_pair(d_kv=8)[1], "sft")):
        assert not packs(model, "seq2seq", "auto", objective)
        with pytest.raises(InputError, match="key 'packing'"):
            packs(model, "seq2seq", True, objective)

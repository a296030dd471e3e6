"""`varlen` (PyTorch's variable-length FlashAttention over packed rows) against SDPA over padded rows: the
collator's example bounds, where `distill train` picks it, and on a GPU the same loss and gradients,
eager and with compiled blocks (grouped-query attention included)."""
from __future__ import annotations

import copy
import random

import pytest
import torch

from distill.records import InputError
from distill.train import load_config
from distill.train.compile import compile_blocks
from distill.train.data import IGNORE, Collator
from distill.train.loop import loss_sum, to_device
from distill.train.model import attention


def examples(n: int = 6, vocab: int = 96) -> list[dict[str, list[int]]]:
    rng = random.Random(0)
    out = []
    for _ in range(n):
        prompt = [rng.randrange(3, vocab) for _ in range(rng.randint(3, 30))]
        target = [rng.randrange(3, vocab) for _ in range(rng.randint(2, 40))]
        out.append({"ids": prompt + target, "labels": [IGNORE] * (len(prompt) - 1) + target + [2]})
    return out


def test_packed_rows_carry_the_example_bounds() -> None:
    data = examples()
    batch = Collator("causal", 0, packing=True)(data)
    lengths = [len(e["ids"]) for e in data]
    bounds = [0]
    for n in lengths:
        bounds.append(bounds[-1] + n)
    assert batch["cu_seq_lens_q"].tolist() == bounds and batch["cu_seq_lens_q"].dtype == torch.int32
    assert batch["max_length_q"] == max(lengths) and batch["max_length_k"] == max(lengths)
    positions = batch["position_ids"][0]
    assert (positions[bounds[:-1]] == 0).all() and positions.numel() == bounds[-1]
    assert to_device(batch, torch.device("cpu"))["max_length_q"] == max(lengths)


@pytest.mark.parametrize(("overrides", "on_gpu", "message"), [
    ({"student": "tiny-llama"}, False, "on CPU"),
    ({"student": "tiny-llama", "packing": False}, True, "packing: false"),
    ({"student": "tiny-llama", "compile": "static", "length_buckets": [64]}, True, "compile: static"),
    ({"student": "tiny-t5"}, True, "not a seq2seq student"),
])
def test_varlen_is_refused_where_it_cannot_run(overrides: dict, on_gpu: bool, message: str) -> None:
    config = load_config(None, {"data": "x", "output_dir": "y", "attn_implementation": "varlen", **overrides})
    kind = "seq2seq" if overrides["student"] == "tiny-t5" else "causal"
    with pytest.raises(InputError, match=f"key 'attn_implementation': varlen trains packed causal students.*{message}"):
        attention(config, on_gpu, kind)


def test_auto_stays_on_sdpa_without_a_gpu_or_packing() -> None:
    config = load_config(None, {"student": "tiny-llama", "data": "x", "output_dir": "y"})
    assert attention(config, False, "causal") == "sdpa"
    unpacked = load_config(None, {"student": "tiny-llama", "data": "x", "output_dir": "y", "packing": False})
    assert attention(unpacked, True, "causal") in ("sdpa", "flash_attention_2")


@pytest.mark.parametrize(("overrides", "want"), [
    ({}, "varlen"),
    ({"packing": True}, "varlen"),
    ({"packing": False}, "sdpa"),
    ({"compile": "static", "length_buckets": [64, 128]}, "sdpa"),  # auto: padded buckets, which varlen cannot run
    ({"mixed_precision": "no"}, "sdpa"),  # fp32 compute: FlashAttention takes bf16/fp16 only
    ({"tiny": {"dropout": 0.1}}, "sdpa"),  # attention dropout: varlen has none
])
def test_auto_picks_varlen_on_a_capable_gpu(monkeypatch: pytest.MonkeyPatch, overrides: dict, want: str) -> None:
    from distill.train import varlen

    monkeypatch.setattr(varlen, "available", lambda: True)  # an Ampere+ GPU, as seen from the selection
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None if name == "flash_attn" else object())
    config = load_config(None, {"student": "tiny-llama", "data": "x", "output_dir": "y", **overrides})
    assert attention(config, True, "causal") == want


def test_generate_runs_on_sdpa_while_padded() -> None:
    """gkd samples with HF generate (padded rows): varlen.padded switches a varlen student to SDPA and back."""
    from distill.train import varlen
    from distill.train.tiny import default_tokenizer, tiny_causal

    tokenizer = default_tokenizer()
    model = tiny_causal(tokenizer, d_model=32, layers=1, heads=2).eval()
    model.set_attn_implementation(varlen.NAME)
    ids = torch.tensor([[5, 6, 7]])
    with pytest.raises(ValueError, match="varlen attention needs packed batches"):
        model.generate(input_ids=ids, max_new_tokens=2, do_sample=False, pad_token_id=0)
    with varlen.padded(model):
        assert model.config._attn_implementation == "sdpa"
        out = model.generate(input_ids=ids, max_new_tokens=2, do_sample=False, pad_token_id=0)
    assert out.shape == (1, 5) and model.config._attn_implementation == varlen.NAME


def test_features_varlen_lacks_are_refused() -> None:
    from distill.train.varlen import varlen_attention

    x = torch.zeros(1, 2, 4, 8)
    with pytest.raises(ValueError, match="does not implement softcap"):
        varlen_attention(torch.nn.Module(), x, x, x, None, cu_seq_lens_q=torch.tensor([0, 4]), max_length_q=4, softcap=30.0)
    with pytest.raises(ValueError, match="no dropout"):
        varlen_attention(torch.nn.Module(), x, x, x, None, dropout=0.1, cu_seq_lens_q=torch.tensor([0, 4]), max_length_q=4)


gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="varlen attention runs on CUDA only")


@gpu
@pytest.mark.parametrize("compiled", [False, True])
def test_packed_varlen_equals_padded_sdpa(compiled: bool) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    from distill.train import varlen

    assert varlen.available()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=96, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    config._attn_implementation = "sdpa"
    sdpa = LlamaForCausalLM(config).cuda()
    packed = copy.deepcopy(sdpa)
    packed.set_attn_implementation(varlen.NAME)
    if compiled:
        for model in (sdpa, packed):
            compile_blocks(model, graph_bound=8)
    data = examples()
    losses, grads = [], []
    for model, collate in ((sdpa, Collator("causal", 0)), (packed, Collator("causal", 0, packing=True))):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = loss_sum(model, to_device(collate(data), torch.device("cuda")))
        loss.backward()
        losses.append(loss.detach())
        grads.append([p.grad for p in model.parameters()])
    torch.testing.assert_close(losses[1], losses[0], rtol=2e-3, atol=2e-2)
    # bf16 kernels that sum in different orders: a few embedding-gradient elements differ by ~0.02 (an H200
    # run), so each gradient is compared as a whole; a leak across examples moves them by far more.
    for got, want in zip(grads[1], grads[0]):
        assert (got - want).norm() <= 2e-2 * want.norm(), (got - want).norm() / want.norm()

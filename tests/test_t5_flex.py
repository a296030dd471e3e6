"""`t5-flex` (FlexAttention, the relative-position bias as a score modifier) against SDPA on the same T5:
the same logits (CPU and GPU) and, on a GPU, the same loss and gradients, eager and with compiled blocks."""
import copy

import pytest
import torch

from distill.records import InputError
from distill.train import load_config
from distill.train.compile import compile_blocks
from distill.train.model import attention, set_attention

pytest.importorskip("torch.nn.attention.flex_attention")


def pair(device: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    from transformers import T5Config, T5ForConditionalGeneration

    import distill.train.t5_flex  # noqa: F401

    torch.manual_seed(0)
    config = T5Config(vocab_size=128, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2, num_heads=4,
                      dropout_rate=0.0, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
                      relative_attention_num_buckets=8, relative_attention_max_distance=16)
    config._attn_implementation = "sdpa"
    sdpa = T5ForConditionalGeneration(config).to(device)
    flex = copy.deepcopy(sdpa)
    set_attention(flex, "t5-flex")
    attentions = [m for m in flex.modules() if type(m).__name__ == "T5Attention"]
    assert len(attentions) == 6 and all(m.config._attn_implementation == "t5-flex" for m in attentions)
    return sdpa, flex


def batch(device: str) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 128, (4, 40), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 25:] = 0
    mask[2, 7:] = 0
    labels = torch.randint(3, 128, (4, 33), generator=g)
    labels[3, 20:] = -100
    return {k: v.to(device) for k, v in {"input_ids": ids, "attention_mask": mask, "labels": labels}.items()}


@pytest.mark.parametrize("kind, on_gpu", [("seq2seq", False), ("causal", True)])
def test_t5_flex_is_refused_where_it_cannot_train(kind: str, on_gpu: bool) -> None:
    config = load_config(None, {"student": "tiny-t5", "data": "x", "output_dir": "y", "attn_implementation": "t5-flex"})
    with pytest.raises(InputError, match="key 'attn_implementation': t5-flex trains T5-family students on a GPU"):
        attention(config, on_gpu, kind)


@pytest.mark.slow  # HF's flex mask compiles create_block_mask: about a minute on 2 CPU cores
def test_logits_match_sdpa_on_cpu() -> None:
    sdpa, flex = pair("cpu")
    inputs = batch("cpu")
    with torch.no_grad():
        want, got = sdpa.eval()(**inputs).logits, flex.eval()(**inputs).logits
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="FlexAttention's backward needs a GPU")
@pytest.mark.parametrize("compiled", [False, True])
def test_loss_and_gradients_match_sdpa_on_gpu(compiled: bool) -> None:
    sdpa, flex = pair("cuda")
    if compiled:
        compile_blocks(flex, graph_bound=16)
    inputs = batch("cuda")
    losses, grads = [], []
    for model in (sdpa, flex):
        loss = model.train()(**inputs).loss
        loss.backward()
        losses.append(loss.detach())
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-4, atol=1e-4)
    assert grads[0].keys() == grads[1].keys()
    bias = "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
    assert grads[1][bias].abs().sum() > 0  # the bias learns through the kernel
    for name, want in grads[0].items():
        torch.testing.assert_close(grads[1][name], want, rtol=1e-3, atol=1e-4, msg=name)

"""`t5-flex` (FlexAttention, the relative-position bias as a score modifier) against SDPA on the same T5:
the same logits (CPU and GPU) and, on a GPU, the same loss and gradients, eager and with compiled blocks."""
import copy

import pytest
import torch

from distill.records import InputError
from distill.train import load_config
from distill.train.compile import compile_blocks
from distill.train.model import attention, set_attention
from t5_tiny import t5_batch as batch
from t5_tiny import tiny_t5

pytest.importorskip("torch.nn.attention.flex_attention")


def pair(device: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    import distill.train.t5_flex  # noqa: F401

    sdpa = tiny_t5(device=device)
    flex = copy.deepcopy(sdpa)
    set_attention(flex, "t5-flex")
    attentions = [m for m in flex.modules() if type(m).__name__ == "T5Attention"]
    assert len(attentions) == 6 and all(m.config._attn_implementation == "t5-flex" for m in attentions)
    return sdpa, flex


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

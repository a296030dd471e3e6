"""The training loss projects only target positions onto the vocabulary and equals the plain
full-logits loss, for a plain, a LoRA-wrapped and a block-compiled causal student, and a seq2seq one
(whose padded target positions are cut as well)."""
from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

from distill.train.compile import compile_blocks
from distill.train.data import IGNORE, Collator
from distill.train.loop import loss_sum
from distill.train.tiny import default_tokenizer, tiny_causal, tiny_seq2seq


def _batch(tokenizer, packing: bool = False) -> dict[str, torch.Tensor]:
    """Causal examples of mixed lengths: prompt positions carry IGNORE, the target positions ids."""
    rng = random.Random(0)
    examples = []
    for _ in range(5):
        prompt = [rng.randrange(3, len(tokenizer)) for _ in range(rng.randint(4, 12))]
        target = [rng.randrange(3, len(tokenizer)) for _ in range(rng.randint(2, 8))]
        ids = prompt + target
        examples.append({"ids": ids, "labels": [IGNORE] * (len(prompt) - 1) + target + [tokenizer.eos_token_id]})
    return Collator("causal", tokenizer.pad_token_id, packing=packing)(examples)


def _seq2seq_batch(tokenizer) -> dict[str, torch.Tensor]:
    rng = random.Random(1)
    examples = [{"src": [rng.randrange(3, len(tokenizer)) for _ in range(rng.randint(3, 10))],
                 "tgt": [rng.randrange(3, len(tokenizer)) for _ in range(rng.randint(2, 9))] + [tokenizer.eos_token_id]}
                for _ in range(5)]
    return Collator("seq2seq", tokenizer.pad_token_id, decoder_start_id=tokenizer.pad_token_id)(examples)


def _full_logits_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**inputs, use_cache=False).logits
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), batch["labels"].reshape(-1),
                           ignore_index=IGNORE, reduction="sum")


def _student(variant: str):
    tokenizer = default_tokenizer()
    torch.manual_seed(0)
    build = tiny_seq2seq if variant == "seq2seq" else tiny_causal
    model = build(tokenizer, d_model=64, layers=2, heads=4)
    if variant == "lora":  # adapters on the LM head too: the cut must reach the adapter's input as well
        from peft import LoraConfig, TaskType, get_peft_model

        model = get_peft_model(model, LoraConfig(task_type=TaskType.CAUSAL_LM, r=4, lora_alpha=8,
                                                 target_modules=["q_proj", "v_proj", "lm_head"]))
        for name, p in model.named_parameters():  # non-zero B: the adapters change the output
            if "lora_B" in name:
                torch.nn.init.normal_(p, std=0.5)
    if variant == "compiled":
        compile_blocks(model, graph_bound=8)
    return tokenizer, model


@pytest.mark.parametrize("variant, packing", [(v, p) for v in ("plain", "lora", "compiled") for p in (False, True)]
                         + [("seq2seq", False)])
def test_target_only_loss_matches_full_logits(variant: str, packing: bool) -> None:
    tokenizer, model = _student(variant)
    batch = _seq2seq_batch(tokenizer) if variant == "seq2seq" else _batch(tokenizer, packing=packing)
    assert variant != "seq2seq" or (batch["labels"] == IGNORE).any()  # padded targets, which the head must skip
    n_targets = int((batch["labels"] != IGNORE).sum())
    head_rows = []
    head = model.get_output_embeddings()
    hook = head.register_forward_hook(lambda _m, _a, out: head_rows.append(out.shape))
    try:
        loss = loss_sum(model, batch)
    finally:
        hook.remove()
    # The vocabulary projection saw the target positions only (no full-vocab logits for the prompt).
    assert head_rows == [torch.Size([n_targets, len(tokenizer)])]
    expected = _full_logits_loss(model, batch)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-4)
    # Gradients agree as well: the loss trains what the plain loss trains.
    trainable = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, trainable)
    expected_grads = torch.autograd.grad(_full_logits_loss(model, batch), trainable)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert head._forward_pre_hooks == {}  # the cut is removed after the call

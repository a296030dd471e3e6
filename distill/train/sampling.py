"""The student's on-policy samples (gkd) from the static-cache decode loop of evaluation, CUDA graphs included.

`SampleLoop` is `distill.evaluation.graphs.GreedyLoop` with its token choice replaced by a draw from
the tempered (and top-p filtered) distribution by the Gumbel-max trick: argmax(logits / T - log E),
E ~ Exp(1) per vocabulary entry, is a sample from softmax(logits / T). The noise comes from an
in-place `exponential_` on a tensor of the step, which a CUDA graph captures like any other kernel
(each replay draws fresh numbers from the generator's advancing offset), so no host sync and no
Python-side sampling enter the step. Temperature 0 is greedy decoding: the same tokens as
`generate(do_sample=False)`.

What this relies on in GreedyLoop (kept small on purpose): the constructor's keywords, `supports`,
`__call__(ids, mask) -> [batch, max_new_tokens]` (pad after EOS), the hook `_emit(st, logits)` that
picks token `i` from [batch, vocab] logits by argmax, and the attribute `eos` (a tensor of EOS ids).
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch

from distill.evaluation.graphs import GreedyLoop, cuda_graph

PROMPT_BUCKET = 64  # prompt widths are padded up to a multiple: one cache and one set of graphs serve many batches

Noise = Callable[[torch.Tensor], torch.Tensor]  # logits [batch, vocab] -> log E of the same shape


def exponential_noise(logits: torch.Tensor) -> torch.Tensor:
    """log E, E ~ Exp(1): subtracted from the logits, the argmax is a sample of their softmax."""
    return torch.empty_like(logits, dtype=torch.float32).exponential_().log()


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """The logits off the smallest set of most likely tokens whose mass reaches `top_p` set to -inf
    (the most likely token always stays); static shapes, no host sync."""
    ordered, order = logits.sort(-1, descending=True)
    probs = ordered.softmax(-1)
    drop = probs.cumsum(-1) - probs >= top_p  # the mass before this token already reaches top_p
    return logits.scatter(-1, order, ordered.masked_fill(drop, float("-inf")))


class SampleLoop(GreedyLoop):
    """Sampling at `temperature` (0: greedy) with nucleus `top_p`, over GreedyLoop's static cache."""

    def __init__(self, model: Any, *, temperature: float, top_p: float = 1.0, eos_token_id: int | None = None,
                 noise: Noise = exponential_noise, **loop: Any):
        super().__init__(model, **loop)
        self.temperature, self.top_p, self.noise = temperature, top_p, noise
        if eos_token_id is not None:  # the tokenizer's EOS, which may not be the model's generation config's
            self.eos = torch.tensor([eos_token_id], device=model.device)

    def _emit(self, st: Any, logits: torch.Tensor) -> None:
        if self.temperature > 0:
            logits = logits.float() / self.temperature
            if self.top_p < 1:
                logits = top_p_filter(logits, self.top_p)
            logits = logits - self.noise(logits)
        super()._emit(st, logits)


class StudentSampler:
    """Samples of a training student with `SampleLoop` (T5 and LLaMA students; `supports`).

    On CUDA the loop decodes a bf16 copy of the student, its weights refreshed in place from the
    trained ones before each batch (the captured graphs keep reading the same storage); the decode
    step is captured in CUDA graphs. Elsewhere it reads the student itself, in eval mode while it
    samples (T5's feed-forward blocks hold dropout)."""

    supports = staticmethod(GreedyLoop.supports)

    def __init__(self, model: Any, *, kind: str, max_new_tokens: int, temperature: float, pad_id: int, eos_id: int,
                 force_length: bool, top_p: float = 1.0):
        self.model, self.kind, self.pad = model, kind, pad_id
        on_gpu = model.device.type == "cuda"
        self.copy = copy.deepcopy(model).to(torch.bfloat16).eval().requires_grad_(False) if on_gpu else model
        for p in self.copy.parameters() if self.copy is not model else ():
            p.grad = None  # deepcopy copies gradients too
        self.loop = SampleLoop(self.copy, temperature=temperature, top_p=top_p, eos_token_id=eos_id,
                               max_new_tokens=max_new_tokens, pad_token_id=pad_id, force_new_tokens=force_length,
                               capture=cuda_graph if on_gpu else None)

    @torch.no_grad()
    def __call__(self, prompts: list[list[int]]) -> torch.Tensor:
        """New token ids [batch, max_new_tokens] (pad after EOS) for token-id prompts."""
        width = -(-max(map(len, prompts)) // PROMPT_BUCKET) * PROMPT_BUCKET
        # Causal models continue the prompt: pad on the left so every row ends where generation starts.
        left = self.kind == "causal"
        pads = [[self.pad] * (width - len(p)) for p in prompts]
        ones = [[1] * len(p) for p in prompts]
        rows = [(q + p) if left else (p + q) for p, q in zip(prompts, pads)]
        mask = [([0] * len(q) + o) if left else (o + [0] * len(q)) for o, q in zip(ones, pads)]
        device = self.model.device
        if self.copy is not self.model:
            for mine, trained in zip(self.copy.parameters(), self.model.parameters()):
                mine.copy_(trained)
            return self.loop(torch.tensor(rows, device=device), torch.tensor(mask, device=device))
        was_training = self.model.training
        self.model.eval()
        try:
            return self.loop(torch.tensor(rows, device=device), torch.tensor(mask, device=device))
        finally:
            self.model.train(was_training)

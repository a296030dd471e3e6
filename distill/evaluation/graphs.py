"""Greedy decoding with static shapes (`GreedyLoop`), its decode step captured in CUDA graphs.

The step is bound by launch overhead and memory traffic, not FLOPs: a few graphs per bucket shape
replace the per-token launches, with no compiler.
"""
from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from distill.evaluation.steps import LlamaStep, T5Step

SEGMENT = 64  # decode steps per CUDA graph: each graph attends only to the cache filled by its last step


def cuda_graph(fn: Callable[[], None], pool: Any) -> Callable[[], None]:
    """`fn` (already warmed up) captured in a CUDA graph; returns its replay."""
    import torch

    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool):
        fn()
    return graph.replay


class GreedyLoop:
    """Greedy decoding with static shapes for T5 and LLaMA models (`supports`): per bucket shape
    (batch, prompt length) one static KV cache; the prompt prefilled in chunks, eagerly; then the
    decode step, all in place on that state, in segments of SEGMENT steps, each attending to the
    cache slots filled by its last step. With `capture` (CUDA: `cuda_graph`) each segment's step is
    captured once per shape and replayed: the graphs of a batch shape serve all its batches.
    Output matches `generate(do_sample=False)` (with `min_new_tokens=max_new_tokens` when
    `force_new_tokens`), up to floating-point ties."""

    @staticmethod
    def supports(model: Any) -> bool:
        from transformers import LlamaForCausalLM, T5ForConditionalGeneration

        return isinstance(model, (T5ForConditionalGeneration, LlamaForCausalLM))

    def __init__(self, model: Any, *, max_new_tokens: int, pad_token_id: int, force_new_tokens: bool,
                 capture: Callable[[Callable[[], None], Any], Callable[[], None]] | None = None):
        import torch
        from transformers import T5ForConditionalGeneration

        self.model, self.new, self.force, self.capture = model, max_new_tokens, force_new_tokens, capture
        self.arch = T5Step(model) if isinstance(model, T5ForConditionalGeneration) else LlamaStep(model)
        eos = model.generation_config.eos_token_id
        self.eos = torch.tensor([eos] if isinstance(eos, int) else list(eos or []), device=model.device)
        self.pad = pad_token_id
        self.state: SimpleNamespace | None = None
        self.shapes: list[tuple[int, int]] = []  # the batch shapes given a state, in order
        self.captured: list[tuple[int, int, int]] = []  # (batch, length, keys) of each captured step

    def _allocate(self, batch: int, length: int) -> SimpleNamespace:
        import torch

        m, arch = self.model, self.arch
        n = arch.cache_len(length, self.new)
        cfg = m.config
        heads = getattr(arch, "kv_heads", arch.heads)
        dim = getattr(cfg, "head_dim", None) or getattr(cfg, "d_kv", None) or cfg.hidden_size // arch.heads
        layers = getattr(cfg, "num_decoder_layers", None) or cfg.num_hidden_layers
        empty = lambda: torch.zeros(batch, heads, n, dim, dtype=m.dtype, device=m.device)
        st = SimpleNamespace(shape=(batch, length), steps={}, k=[empty() for _ in range(layers)],
                             tok=torch.zeros(batch, 1, dtype=torch.long, device=m.device),
                             i=torch.zeros(1, dtype=torch.long, device=m.device),
                             out=torch.zeros(batch, self.new, dtype=torch.long, device=m.device),
                             finished=torch.zeros(batch, dtype=torch.bool, device=m.device),
                             pool=torch.cuda.graph_pool_handle() if self.capture is cuda_graph else None)
        st.v = [empty() for _ in st.k]
        arch.allocate(st, batch, length, self.new)
        return st

    def _emit(self, st: SimpleNamespace, logits: Any) -> None:
        """Token `i` from `logits`: EOS barred when forcing, pad after EOS; in place, no host sync."""
        if self.force and len(self.eos):
            logits = logits.index_fill(1, self.eos, float("-inf"))
        token = logits.argmax(-1).masked_fill(st.finished, self.pad)
        st.finished |= token.unsqueeze(1).eq(self.eos).any(1)
        st.out.index_copy_(1, st.i, token[:, None])
        st.tok.copy_(token[:, None])
        st.i += 1

    def _step_fn(self, st: SimpleNamespace, keys: int) -> Callable[[], None]:
        def step() -> None:
            self._emit(st, self.arch.step(st, keys))

        if self.capture is None:
            return step
        if keys not in st.steps:  # warm up (on the side stream CUDA graphs want), undo its writes, capture
            import torch

            saved = [t.clone() for t in (st.tok, st.i, st.out, st.finished)]
            side = torch.cuda.Stream() if st.pool is not None else None
            if side is not None:
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    step()
                torch.cuda.current_stream().wait_stream(side)
            else:
                step()
            for t, value in zip((st.tok, st.i, st.out, st.finished), saved):
                t.copy_(value)
            st.steps[keys] = self.capture(step, st.pool)
            self.captured.append((*st.shape, keys))
        return st.steps[keys]

    def __call__(self, ids: Any, mask: Any) -> Any:
        """New token ids [batch, max_new_tokens] (pad after EOS) for a padded prompt batch."""
        import torch

        shape = (ids.shape[0], ids.shape[1])
        if self.state is None or self.state.shape != shape:
            self.state = None  # free the last shape's cache and graphs first
            self.state = self._allocate(*shape)
            self.shapes.append(shape)
        st, arch = self.state, self.arch
        with torch.inference_mode():
            st.i.zero_()
            st.finished.zero_()
            st.out.fill_(self.pad)
            first = arch.prefill(st, ids, mask)
            if first is not None:
                self._emit(st, first)
            start = 1 if first is not None else 0
            for begin in range(start, self.new, SEGMENT):
                end = min(begin + SEGMENT, self.new)
                step = self._step_fn(st, arch.keys(ids.shape[1], end - 1))
                for _ in range(begin, end):
                    step()
                if not self.force and bool(st.finished.all()):
                    break
            return st.out.clone()
